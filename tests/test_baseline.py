"""The PostgreSQL baseline keeps the service's promises, so the benchmarks compare like with like.

Each test runs on a fresh database: no oversell under concurrent buyers, all-or-nothing
orders, the cancel / ship / expiry states, idempotent retries, and the HTTP routes'
shapes and status codes, which must match the service's for the load generator. The
baseline lives with the benchmarks (scripts/baseline/): the service's wheel leaves it out.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
from baseline import PgStockEngine, create_schema
from baseline.app import BaselineSettings, create_app

from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
)
from inventory_cache.models import LineRequest, ReservedLine
from tests.support.clock import ManualClock
from tests.support.postgres import empty_database


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    with empty_database() as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await create_schema(conn)
        yield url


@pytest.fixture
async def pg(dsn: str, clock: ManualClock) -> AsyncIterator[PgStockEngine]:
    engine = await PgStockEngine.connect(
        dsn, pool_size=4, location_priority=["north", "south"], clock=clock
    )
    yield engine
    await engine.close()


async def ledger(dsn: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(sql)
        return list(await cur.fetchall())


async def test_concurrent_buyers_from_two_pools_never_oversell(dsn: str, pg: PgStockEngine) -> None:
    await pg.inbound(ref="in", sku="HOT", location="north", qty=50)
    other = await PgStockEngine.connect(dsn, pool_size=4)

    async def buy(engine: PgStockEngine, i: int) -> bool:
        try:
            await engine.reserve(order_id=f"o{i}", lines=[LineRequest("HOT", 1)])
        except InsufficientStock:
            return False
        return True

    try:
        results = await asyncio.gather(*(buy((pg, other)[i % 2], i) for i in range(300)))
    finally:
        await other.close()

    assert sum(results) == 50
    level = (await pg.stock("HOT")).locations["north"]
    assert (level.on_hand, level.locked, level.available) == (50, 50, 0)
    rows = await ledger(
        dsn, "SELECT count(*), max(locked_after) FROM baseline_movements WHERE type = 'reserve'"
    )
    assert rows == [(50, 50)]


async def test_a_multi_line_order_locks_every_line_or_none(pg: PgStockEngine) -> None:
    await pg.inbound(ref="a", sku="A", location="north", qty=5)
    await pg.inbound(ref="b", sku="B", location="north", qty=3)

    with pytest.raises(InsufficientStock) as exc:
        await pg.reserve(order_id="o", lines=[LineRequest("A", 2), LineRequest("B", 5)])

    assert exc.value.lines == [{"sku": "B", "requested": 5, "available": 3}]
    assert (await pg.availability("A")).available == 5
    with pytest.raises(NotFound):
        await pg.get_reservation("o")


async def test_line_without_location_follows_priority_then_splits(pg: PgStockEngine) -> None:
    await pg.inbound(ref="a", sku="X", location="north", qty=3)
    await pg.inbound(ref="b", sku="X", location="south", qty=3)

    first = await pg.reserve(order_id="o1", lines=[LineRequest("X", 2)])
    split = await pg.reserve(order_id="o2", lines=[LineRequest("X", 4)])

    assert first.lines == [ReservedLine("X", 2, "north")]
    assert split.lines == [ReservedLine("X", 1, "north"), ReservedLine("X", 3, "south")]
    assert (await pg.availability("X")).available == 0


async def test_cancel_releases_once_and_then_refuses_ship(pg: PgStockEngine) -> None:
    await pg.inbound(ref="in", sku="A", location="north", qty=10)
    await pg.reserve(order_id="o", lines=[LineRequest("A", 1, "north")])

    first = await pg.cancel("o")
    again = await pg.cancel("o")

    assert (first.status, again.status, again.replayed) == ("cancelled", "cancelled", True)
    level = (await pg.stock("A")).locations["north"]
    assert (level.on_hand, level.locked, level.available) == (10, 0, 10)
    with pytest.raises(InvalidState):
        await pg.ship("o")


async def test_ship_takes_the_units_once_and_then_refuses_cancel(pg: PgStockEngine) -> None:
    await pg.inbound(ref="in", sku="A", location="north", qty=10)
    await pg.reserve(order_id="o", lines=[LineRequest("A", 1)])

    await pg.ship("o")
    again = await pg.ship("o")

    assert (again.status, again.replayed) == ("shipped", True)
    level = (await pg.stock("A")).locations["north"]
    assert (level.on_hand, level.locked, level.available) == (9, 0, 9)
    with pytest.raises(InvalidState):
        await pg.cancel("o")


async def test_an_expired_reservation_cannot_ship_and_its_units_return(
    pg: PgStockEngine, clock: ManualClock
) -> None:
    await pg.inbound(ref="in", sku="A", location="north", qty=2)
    await pg.reserve(order_id="late", lines=[LineRequest("A", 1)], ttl_seconds=60)
    await pg.reserve(order_id="swept", lines=[LineRequest("A", 1)], ttl_seconds=60)
    clock.advance(61)

    with pytest.raises(InvalidState) as exc:
        await pg.ship("late")
    swept = await pg.expire_due()

    assert exc.value.extra["status"] == "expired"
    assert swept == 1
    assert (await pg.get_reservation("swept")).status == "expired"
    assert (await pg.availability("A")).available == 2


async def test_a_retried_order_replays_and_another_body_is_refused(pg: PgStockEngine) -> None:
    await pg.inbound(ref="in", sku="A", location="north", qty=10)
    first = await pg.reserve(order_id="o", lines=[LineRequest("A", 2)])

    again = await pg.reserve(order_id="o", lines=[LineRequest("A", 2)])
    with pytest.raises(IdempotencyMismatch):
        await pg.reserve(order_id="o", lines=[LineRequest("A", 3)])

    assert (again.lines, again.replayed) == (first.lines, True)
    assert (await pg.availability("A")).available == 8


async def test_inbound_counts_a_ref_once(dsn: str, pg: PgStockEngine) -> None:
    await pg.inbound(ref="r1", sku="A", location="north", qty=4)
    again = await pg.inbound(ref="r1", sku="A", location="north", qty=4)

    with pytest.raises(IdempotencyMismatch):
        await pg.inbound(ref="r1", sku="A", location="north", qty=5)

    assert (again.on_hand, again.replayed) == (4, True)
    rows = await ledger(dsn, "SELECT op_id, delta_on_hand, on_hand_after FROM baseline_movements")
    assert rows == [("inbound:r1", 4, 4)]


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process, its lifespan (pool, tables) run as a server would run it."""
    settings = BaselineSettings(database_url=dsn, pool_size=2, location_priority="north")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baseline") as c:
            yield c


async def test_http_routes_answer_with_the_service_shapes_and_codes(
    client: httpx.AsyncClient,
) -> None:
    seeded = await client.post(
        "/v1/inbound", json={"ref": "in", "sku": "A", "location": "north", "qty": 2}
    )
    created = await client.post(
        "/v1/reservations", json={"order_id": "o", "lines": [{"sku": "A", "qty": 2}]}
    )
    short = await client.post(
        "/v1/reservations", json={"order_id": "p", "lines": [{"sku": "A", "qty": 1}]}
    )
    shipped = await client.post("/v1/reservations/o/ship")
    cancel_after_ship = await client.post("/v1/reservations/o/cancel")

    assert seeded.status_code == 200
    assert seeded.json() == {
        "sku": "A",
        "location": "north",
        "on_hand": 2,
        "locked": 0,
        "safety_stock": 0,
        "available": 2,
    }
    assert created.status_code == 201
    assert created.json()["status"] == "active"
    assert created.json()["expires_at"].endswith("Z")  # ISO 8601 UTC, as the API writes it
    assert created.json()["lines"] == [{"sku": "A", "qty": 2, "location": "north"}]
    assert short.status_code == 409
    assert short.headers["content-type"] == "application/problem+json"
    assert short.json()["code"] == "insufficient_stock"
    assert short.json()["type"] == "urn:inventory-cache:problem:insufficient_stock"
    assert short.json()["lines"] == [{"sku": "A", "requested": 1, "available": 0}]
    assert (shipped.status_code, shipped.json()["status"]) == (200, "shipped")
    assert (cancel_after_ship.status_code, cancel_after_ship.json()["code"]) == (
        409,
        "invalid_state",
    )
    assert (await client.get("/v1/stock/A")).json() == {
        "sku": "A",
        "locations": {"north": {"on_hand": 0, "locked": 0, "safety_stock": 0, "available": 0}},
    }


async def test_http_reads_and_bad_input(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/v1/availability/NOPE")
    batch = await client.get("/v1/availability", params=[("sku", "B"), ("sku", "NOPE")])
    zero = await client.post(
        "/v1/reservations", json={"order_id": "o", "lines": [{"sku": "A", "qty": 0}]}
    )
    missing = await client.post("/v1/reservations/none/cancel")

    assert unknown.json() == {"sku": "NOPE", "available": 0, "in_stock": False, "locations": {}}
    assert [i["sku"] for i in batch.json()["items"]] == ["B", "NOPE"]
    assert (zero.status_code, zero.json()["code"]) == (422, "validation_error")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (await client.get("/v1/ping")).status_code == 200


def test_the_wheel_leaves_the_baseline_out(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(n.startswith("inventory_cache/") for n in names)
    assert not [n for n in names if "baseline" in n]
