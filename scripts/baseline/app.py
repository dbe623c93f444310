"""The baseline behind HTTP: the API's stock and reservation routes, served from PostgreSQL.

Same framework, same server, same shapes and status codes as the service's API for the
routes the load generator drives (availability, stock, inbound to seed, reservations
create / read / cancel / ship, and the trivial `GET /v1/ping`), so `scripts/loadgen.py`
runs every scenario against either. Bodies are parsed with orjson and checked with the
service's own `validation` rules, and answers are encoded with orjson: the baseline pays
no more framework cost than a lean service would. It checks no API key (a bearer header
is accepted and ignored), which if anything flatters the baseline.

Run it with uvicorn's factory mode:
`uvicorn --app-dir scripts --factory baseline.app:create_app_from_env`, configured by
`INVENTORY_BASELINE_*` variables (see `BaselineSettings`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from baseline.engine import PgStockEngine
from baseline.schema import create_schema
from inventory_cache.errors import InventoryError, ValidationError
from inventory_cache.models import Availability, Level, LineRequest, Reservation


class BaselineSettings(BaseSettings):
    """`INVENTORY_BASELINE_*`: where the baseline keeps its tables and how it connects."""

    model_config = SettingsConfigDict(env_prefix="INVENTORY_BASELINE_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/inventory_baseline"
    # Connections per server process; a hot row serialises on its lock, so more
    # connections add waiting, not throughput (measured here: 8 clients beat 32).
    pool_size: int = Field(default=8, ge=1, le=64)
    synchronous_commit: bool = True
    location_priority: Annotated[list[str], NoDecode] = Field(default_factory=list)
    reservation_ttl_seconds: int = Field(default=900, ge=1, le=30 * 86400)

    @field_validator("location_priority", mode="before")
    @classmethod
    def _split_locations(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the API writes `expires_at`: `2026-11-22T10:15:00.000Z`."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)
    return stamp.isoformat(timespec="milliseconds") + "Z"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _problem(exc: InventoryError) -> Response:
    body = {
        "type": f"urn:inventory-cache:problem:{exc.code}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
        **exc.extra,
    }
    return Response(
        orjson.dumps(body), status_code=exc.status, media_type="application/problem+json"
    )


def _availability(a: Availability) -> dict[str, Any]:
    return {
        "sku": a.sku,
        "available": a.available,
        "in_stock": a.in_stock,
        "locations": a.locations,
    }


def _level(lv: Level) -> dict[str, Any]:
    return {
        "sku": lv.sku,
        "location": lv.location,
        "on_hand": lv.on_hand,
        "locked": lv.locked,
        "safety_stock": lv.safety_stock,
        "available": lv.available,
    }


def _reservation(r: Reservation) -> dict[str, Any]:
    return {
        "order_id": r.order_id,
        "status": r.status,
        "expires_at": iso_ms(r.expires_at),
        "lines": [{"sku": ln.sku, "qty": ln.qty, "location": ln.location} for ln in r.lines],
    }


async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ValidationError("the body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(sorted(unknown))}", field="body")
    return body


def _field(body: dict[str, Any], name: str) -> Any:
    """A body field as sent (absent is None): the engine checks types and ranges itself."""
    return body.get(name)


def _lines(raw: Any) -> list[LineRequest]:
    if not isinstance(raw, list):
        raise ValidationError("lines must be a list", field="lines")
    out = []
    for ln in raw:
        if not isinstance(ln, dict) or set(ln) - {"sku", "qty", "location"}:
            raise ValidationError("a line is {sku, qty, location?}", field="lines")
        out.append(LineRequest(_field(ln, "sku"), _field(ln, "qty"), _field(ln, "location")))
    return out


def create_app(settings: BaselineSettings | None = None) -> FastAPI:
    """The baseline app; its lifespan creates the tables and opens the connection pool."""
    cfg = settings or BaselineSettings()
    engines: list[PgStockEngine] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await PgStockEngine.connect(
            cfg.database_url,
            pool_size=cfg.pool_size,
            synchronous_commit=cfg.synchronous_commit,
            location_priority=cfg.location_priority,
            reservation_ttl_seconds=cfg.reservation_ttl_seconds,
        )
        async with engine.pool.connection() as conn:
            await create_schema(conn)
        engines.append(engine)
        try:
            yield
        finally:
            await engine.close()

    app = FastAPI(title="inventory-cache PostgreSQL baseline", lifespan=lifespan)

    def eng() -> PgStockEngine:
        return engines[0]

    @app.exception_handler(InventoryError)
    async def inventory_error(request: Request, exc: InventoryError) -> Response:
        return _problem(exc)

    @app.get("/v1/ping")
    async def ping() -> Response:
        return _json({"status": "ok"})

    @app.get("/v1/availability/{sku}")
    async def availability(sku: str) -> Response:
        return _json(_availability(await eng().availability(sku)))

    @app.get("/v1/availability")
    async def availability_many(sku: Annotated[list[str], Query()]) -> Response:
        items = await eng().availability_many(sku)
        return _json({"items": [_availability(a) for a in items]})

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str) -> Response:
        view = await eng().stock(sku)
        locations = {
            loc: {
                "on_hand": lv.on_hand,
                "locked": lv.locked,
                "safety_stock": lv.safety_stock,
                "available": lv.available,
            }
            for loc, lv in view.locations.items()
        }
        return _json({"sku": view.sku, "locations": locations})

    @app.post("/v1/inbound")
    async def inbound(request: Request) -> Response:
        b = await _body(request, frozenset({"ref", "sku", "location", "qty"}))
        level = await eng().inbound(
            ref=_field(b, "ref"),
            sku=_field(b, "sku"),
            location=_field(b, "location"),
            qty=_field(b, "qty"),
        )
        return _json(_level(level))

    @app.post("/v1/reservations")
    async def reserve(request: Request) -> Response:
        b = await _body(request, frozenset({"order_id", "lines", "ttl_seconds"}))
        res = await eng().reserve(
            order_id=_field(b, "order_id"),
            lines=_lines(_field(b, "lines")),
            ttl_seconds=_field(b, "ttl_seconds"),
        )
        return _json(_reservation(res), 201)

    @app.get("/v1/reservations/{order_id}")
    async def get_reservation(order_id: str) -> Response:
        return _json(_reservation(await eng().get_reservation(order_id)))

    @app.post("/v1/reservations/{order_id}/cancel")
    async def cancel(order_id: str) -> Response:
        return _json(_reservation(await eng().cancel(order_id)))

    @app.post("/v1/reservations/{order_id}/ship")
    async def ship(order_id: str) -> Response:
        return _json(_reservation(await eng().ship(order_id)))

    return app


def create_app_from_env() -> FastAPI:
    """uvicorn `--factory` entry point: settings from `INVENTORY_BASELINE_*`."""
    return create_app(BaselineSettings())
