"""Liveness, readiness, Prometheus metrics, and `/v1/ping`: no key needed.

`/v1/ping` is the trivial JSON route the load tests use as the ceiling of this server
configuration: same app, same middlewares, no Redis, no auth.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from inventory_cache import behind
from inventory_cache.api.deps import Services, ServicesDep
from inventory_cache.api.problems import problem, problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas import Status

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Status, summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Status,
    responses=problem_responses(
        503,
        s503="Not ready (`not_ready`): `redis` and `postgres` say which is missing; "
        "`behind` names the slot groups whose Redis lost changes PostgreSQL holds.",
    ),
    summary="Readiness: Redis loaded (a real script runs), not behind the ledger, and "
    "PostgreSQL reachable",
)
async def readyz(services: ServicesDep) -> Response:
    groups_behind = await ledger_readiness(services)
    try:
        redis_ok = await services.engine.check_ready()
    except Exception:
        redis_ok = False
    postgres_ok = await services.ledger.ping()
    if redis_ok and postgres_ok and not groups_behind:
        return json_response({"status": "ready"})
    extra: dict[str, object] = {"redis": redis_ok, "postgres": postgres_ok}
    if groups_behind:
        detail = (
            f"{len(groups_behind)} slot group(s) behind the ledger, refusing their reads "
            "and writes (run warmup)"
        )
        extra["behind"] = {str(g): reason for g, reason in sorted(groups_behind.items())}
    elif not redis_ok:
        detail = "stock cache not loaded (run warmup)"
    else:
        detail = "PostgreSQL unreachable"
    return problem(503, "not_ready", "Service not ready", detail, extra)


async def ledger_readiness(services: Services) -> dict[int, str]:
    """The slot groups behind the ledger (group -> reason): those marked so, plus those a
    comparison of Redis with PostgreSQL's newest committed entries finds now (and marks,
    so their scripts refuse at once). Other groups keep serving; without PostgreSQL only
    the marks count."""
    try:
        return await behind.check_async(
            services.engine.client, services.ledger.db, services.engine.keys
        )
    except Exception:
        return {}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics of this process",
)
async def metrics(services: ServicesDep) -> Response:
    body = await services.metrics.render(services.engine)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/ping", response_model=Status, summary="A trivial JSON answer (load-test ceiling)")
async def ping() -> Response:
    return json_response({"status": "ok"})
