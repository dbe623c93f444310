"""Liveness, readiness, Prometheus metrics, and `/v1/ping`: no key needed.

`/v1/ping` is the trivial JSON route the load tests use as the ceiling of this server
configuration: same app, same middlewares, no Redis, no auth.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from inventory_cache.api.deps import ServicesDep
from inventory_cache.api.problems import problem, problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas import Status

router = APIRouter(tags=["ops"])
METRICS_EXAMPLE = (
    "# HELP inventory_http_requests_total HTTP requests by route template, method and status.\n"
    "# TYPE inventory_http_requests_total counter\n"
    'inventory_http_requests_total{method="POST",route="/v1/reservations",status="201"} 1.0\n'
)


@router.get("/healthz", response_model=Status, summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Status,
    responses=problem_responses(
        503,
        s503="Not ready (`not_ready`): `redis` and `postgres` say which is missing.",
    ),
    summary="Readiness: Redis loaded (a real script runs) and PostgreSQL reachable",
)
async def readyz(services: ServicesDep) -> Response:
    try:
        redis_ok = await services.engine.check_ready()
    except Exception:
        redis_ok = False
    postgres_ok = await services.ledger.ping()
    if redis_ok and postgres_ok:
        return json_response({"status": "ready"})
    detail = "stock cache not loaded (run warmup)" if not redis_ok else "PostgreSQL unreachable"
    extra = {"redis": redis_ok, "postgres": postgres_ok}
    return problem(503, "not_ready", "Service not ready", detail, extra)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"example": METRICS_EXAMPLE}},
            "description": "Prometheus text format.",
        }
    },
    summary="Prometheus metrics of this process",
)
async def metrics(services: ServicesDep) -> Response:
    body = await services.metrics.render(services.engine)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/ping", response_model=Status, summary="A trivial JSON answer (load-test ceiling)")
async def ping() -> Response:
    return json_response({"status": "ok"})
