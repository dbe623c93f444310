"""Reconciliation with the WMS on demand (scope `admin`), and its recorded runs.

`POST /v1/reconcile` runs one now against the configured WMS (`INVENTORY_WMS_URL` or
`INVENTORY_WMS_CSV_PATH`) and answers the finished run (201); with `?wait=false` it
answers 202 at once and the run continues in this process: poll
`GET /v1/reconcile/{run_id}` (status `running`, then `done` or `failed`).
`GET /v1/reconcile` lists the latest runs, newest first, with their summaries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import sessionmaker
from starlette.responses import Response

from inventory_cache.api.data import reconcile as data
from inventory_cache.api.deps import AdminKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import IDENT_PATTERN
from inventory_cache.api.schemas.reconcile import ReconcileIn, RunOut, RunsOut
from inventory_cache.errors import InvalidState, NotFound, NotReady
from inventory_cache.reconcile import begin_run, new_run_id, run_recorded
from inventory_cache.wms import WmsError, WmsNotConfigured, wms_from_settings

router = APIRouter(prefix="/v1/reconcile", tags=["reconcile"])
log = logging.getLogger(__name__)


class WmsMissing(InvalidState):
    """A configuration error, not a readiness one: 503 would invite retries that cannot
    succeed until an operator sets a WMS."""

    title = "No WMS configured"


@router.post(
    "",
    response_model=RunOut,
    status_code=201,
    responses={
        202: {"description": "Started (`wait=false`); poll the run."},
        **problem_responses(
            401,
            403,
            409,
            422,
            503,
            s409="No WMS configured (`invalid_state`): set INVENTORY_WMS_URL or "
            "INVENTORY_WMS_CSV_PATH.",
            s503="The WMS could not be reached or read.",
        ),
    },
    summary="Reconcile with the WMS now",
)
async def start_run(
    services: ServicesDep,
    _: AdminKey,
    body: ReconcileIn | None = None,
    wait: Annotated[bool, Query(description="false: answer 202 at once")] = True,
) -> Response:
    """Diffs are `oversell_risk` (ours > WMS) or `undersell` (ours < WMS); in `correct`
    mode each is fixed by an adjustment with reason `reconcile`."""
    cfg = services.settings
    try:
        source = wms_from_settings(cfg)
    except WmsNotConfigured as exc:
        raise WmsMissing(str(exc)) from None
    mode = (body.mode if body else None) or cfg.reconcile_mode
    sessions = sessionmaker(services.postgres.engine, expire_on_commit=False)
    run_id = new_run_id(services.engine.now())
    await begin_run(sessions, run_id=run_id, mode=mode, source=source)
    run = run_recorded(services.engine, source, sessions, mode=mode, run_id=run_id, begun=True)
    if not wait:
        task = asyncio.create_task(_quietly(run))
        services.reconcile_runs.add(task)
        task.add_done_callback(services.reconcile_runs.discard)
        return json_response({"run_id": run_id, "status": "running"}, 202)
    try:
        await run
    except WmsError as exc:
        raise NotReady(f"WMS: {exc}") from None
    return json_response(await services.postgres.run(data.run, run_id), 201)


async def _quietly(run: Any) -> None:
    try:
        await run
    except Exception:
        log.exception("reconciliation failed")


@router.get(
    "",
    response_model=RunsOut,
    responses=problem_responses(401, 403, 422, 503),
    summary="The latest reconciliation runs, newest first",
)
async def runs(
    services: ServicesDep,
    _: AdminKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Response:
    items = await services.postgres.run(data.runs, limit)
    return json_response({"items": items})


@router.get(
    "/{run_id}",
    response_model=RunOut,
    responses=problem_responses(401, 403, 404, 422, 503),
    summary="A reconciliation run and its diffs",
)
async def get_run(
    run_id: Annotated[str, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN)],
    services: ServicesDep,
    _: AdminKey,
) -> Response:
    run = await services.postgres.run(data.run, run_id)
    if run is None:
        raise NotFound(f"no reconciliation run {run_id}")
    return json_response(run)
