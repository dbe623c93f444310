"""Every route of the contract that this API serves, through the ASGI app on real Redis and
PostgreSQL: shapes, status codes and the business example of docs/contract.md."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from inventory_cache.lag import GROUP
from persistence.models import Movement
from tests.support.api import Api

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def inbound(api: Api, sku: str, location: str, qty: int, ref: str = "po") -> Any:
    r = await api.client.post(
        "/v1/inbound",
        json={"ref": ref, "sku": sku, "location": location, "qty": qty},
        headers=api.auth("warehouse"),
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_spec_example_reserve_cancel_and_ship(api: Api) -> None:
    c, wh, co = api.client, api.auth("warehouse"), api.auth("checkout")
    assert await inbound(api, "phone-A", "north", 10) == {
        "sku": "phone-A",
        "location": "north",
        "on_hand": 10,
        "locked": 0,
        "safety_stock": 0,
        "available": 10,
    }

    r = await c.post(
        "/v1/reservations",
        json={"order_id": "o1", "lines": [{"sku": "phone-A", "qty": 1}]},
        headers=co,
    )
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "active" and body["order_id"] == "o1"
    assert body["lines"] == [{"sku": "phone-A", "qty": 1, "location": "north"}]
    assert ISO_UTC.match(body["expires_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=890) < expires - datetime.now(UTC) <= timedelta(seconds=900)
    stock = (await c.get("/v1/stock/phone-A", headers=api.auth("read"))).json()
    assert stock == {
        "sku": "phone-A",
        "locations": {"north": {"on_hand": 10, "locked": 1, "safety_stock": 0, "available": 9}},
    }

    cancelled = await c.post("/v1/reservations/o1/cancel", headers=co)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await c.post("/v1/reservations/o1/cancel", headers=co)
    assert again.json() == cancelled.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert (await c.get("/v1/stock/phone-A", headers=api.auth("read"))).json()["locations"][
        "north"
    ]["available"] == 10

    await c.post(
        "/v1/reservations",
        json={"order_id": "o2", "lines": [{"sku": "phone-A", "qty": 1}]},
        headers=co,
    )
    shipped = await c.post("/v1/reservations/o2/ship", headers=wh)
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped"
    levels = (await c.get("/v1/stock/phone-A", headers=api.auth("read"))).json()
    assert levels["locations"]["north"] == {
        "on_hand": 9,
        "locked": 0,
        "safety_stock": 0,
        "available": 9,
    }
    got = await c.get("/v1/reservations/o2", headers=co)
    assert got.status_code == 200 and got.json()["status"] == "shipped"
    refused = await c.post("/v1/reservations/o2/cancel", headers=co)
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_state"
    assert (await c.post("/v1/reservations/o1/ship", headers=wh)).json()["code"] == "invalid_state"


async def test_reservation_refused_lists_the_short_lines_and_locks_nothing(api: Api) -> None:
    await inbound(api, "A", "north", 5)
    await inbound(api, "B", "north", 1)
    r = await api.client.post(
        "/v1/reservations",
        json={"order_id": "o", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 3}]},
        headers=api.auth("checkout"),
    )

    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "insufficient_stock" and problem["status"] == 409
    assert problem["lines"] == [{"sku": "B", "requested": 3, "available": 1}]
    assert {"type", "title", "detail"} <= problem.keys()
    avail = await api.client.get("/v1/availability?sku=A&sku=B", headers=api.auth("read"))
    assert [i["available"] for i in avail.json()["items"]] == [5, 1]


async def test_reservation_takes_location_and_ttl_and_unknown_order_is_404(api: Api) -> None:
    await inbound(api, "A", "north", 5, ref="po-n")
    await inbound(api, "A", "south", 5, ref="po-s")
    r = await api.client.post(
        "/v1/reservations",
        json={
            "order_id": "o",
            "lines": [{"sku": "A", "qty": 2, "location": "south"}],
            "ttl_seconds": 60,
        },
        headers=api.auth("checkout"),
    )

    assert r.json()["lines"] == [{"sku": "A", "qty": 2, "location": "south"}]
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    for path in ("/v1/reservations/nope", "/v1/reservations/nope/cancel"):
        method = "GET" if path.endswith("nope") else "POST"
        missing = await api.client.request(method, path, headers=api.auth("checkout"))
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_availability_single_batch_and_unknown_sku(api: Api) -> None:
    await inbound(api, "A", "north", 3, ref="po-n")
    await inbound(api, "A", "south", 4, ref="po-s")
    read = api.auth("read")

    one = await api.client.get("/v1/availability/A", headers=read)
    unknown = await api.client.get("/v1/availability/ZZZ", headers=read)
    batch = await api.client.get("/v1/availability?sku=ZZZ&sku=A&sku=ZZZ", headers=read)

    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert one.json() == {
        "sku": "A",
        "available": 7,
        "in_stock": True,
        "locations": {"north": 3, "south": 4},
    }
    zero = {"sku": "ZZZ", "available": 0, "in_stock": False, "locations": {}}
    assert unknown.status_code == 200 and unknown.json() == zero
    assert batch.json() == {"items": [zero, one.json(), zero]}


async def test_batch_availability_takes_1_to_200_skus(api: Api) -> None:
    read = api.auth("read")
    skus = "&".join(f"sku=S{i}" for i in range(200))
    ok = await api.client.get(f"/v1/availability?{skus}", headers=read)
    too_many = await api.client.get(f"/v1/availability?{skus}&sku=X", headers=read)
    none = await api.client.get("/v1/availability", headers=read)

    assert ok.status_code == 200 and len(ok.json()["items"]) == 200
    assert too_many.status_code == 422 and none.status_code == 422


async def test_adjustments_by_delta_by_count_and_compare_and_set(api: Api) -> None:
    await inbound(api, "A", "north", 10)
    wh = api.auth("warehouse")
    base = {"sku": "A", "location": "north"}

    damaged = await api.client.post(
        "/v1/adjustments", json={**base, "ref": "a1", "delta": -2, "reason": "damage"}, headers=wh
    )
    counted = await api.client.post(
        "/v1/adjustments",
        json={**base, "ref": "a2", "set_on_hand": 6, "expected_on_hand": 8, "reason": "count"},
        headers=wh,
    )
    stale = await api.client.post(
        "/v1/adjustments",
        json={**base, "ref": "a3", "set_on_hand": 1, "expected_on_hand": 8, "reason": "count"},
        headers=wh,
    )

    assert damaged.status_code == 200 and damaged.json()["on_hand"] == 8
    assert counted.status_code == 200 and counted.json()["on_hand"] == 6
    assert stale.status_code == 409 and stale.json()["code"] == "invalid_state"
    for bad in (
        {**base, "ref": "b", "reason": "damage"},
        {**base, "ref": "b", "reason": "damage", "delta": 1, "set_on_hand": 3},
        {**base, "ref": "b", "reason": "damage", "delta": 0},
        {**base, "ref": "b", "reason": "theft", "delta": 1},
    ):
        r = await api.client.post("/v1/adjustments", json=bad, headers=wh)
        assert r.status_code == 422, bad


async def test_movement_ref_replays_and_refuses_another_body(api: Api) -> None:
    first = await inbound(api, "A", "north", 3, ref="po-9")
    retry = await api.client.post(
        "/v1/inbound",
        json={"ref": "po-9", "sku": "A", "location": "north", "qty": 3},
        headers=api.auth("warehouse"),
    )
    other = await api.client.post(
        "/v1/inbound",
        json={"ref": "po-9", "sku": "A", "location": "north", "qty": 4},
        headers=api.auth("warehouse"),
    )

    assert retry.json() == first and retry.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "idempotency_mismatch"


async def test_returns_with_and_without_restock(api: Api) -> None:
    await inbound(api, "A", "north", 1)
    wh = api.auth("warehouse")
    base = {"sku": "A", "location": "north", "qty": 2}

    restocked = await api.client.post(
        "/v1/returns", json={**base, "ref": "r1", "restock": True}, headers=wh
    )
    recorded = await api.client.post(
        "/v1/returns", json={**base, "ref": "r2", "restock": False}, headers=wh
    )

    assert restocked.status_code == 200 and restocked.json()["on_hand"] == 3
    assert recorded.status_code == 200 and recorded.json()["on_hand"] == 3


async def test_transfer_request_ship_receive_as_in_spec(api: Api) -> None:
    await inbound(api, "B", "north", 1000)
    c, wh = api.client, api.auth("warehouse")
    body = {
        "transfer_id": "t1",
        "sku": "B",
        "from_location": "north",
        "to_location": "south",
        "qty": 100,
    }

    requested = await c.post("/v1/transfers", json=body, headers=wh)
    assert requested.status_code == 201
    assert requested.json() == {**body, "status": "requested"}
    north = (await c.get("/v1/stock/B", headers=api.auth("read"))).json()["locations"]["north"]
    assert (north["locked"], north["available"]) == (100, 900)

    shipped = await c.post("/v1/transfers/t1/ship", headers=wh)
    assert shipped.status_code == 200 and shipped.json()["status"] == "in_transit"
    assert (await c.get("/v1/transfers/t1", headers=wh)).json()["status"] == "in_transit"
    refused = await c.post("/v1/transfers/t1/cancel", headers=wh)
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_state"

    received = await c.post("/v1/transfers/t1/receive", headers=wh)
    assert received.status_code == 200 and received.json()["status"] == "received"
    avail = (await c.get("/v1/availability/B", headers=api.auth("read"))).json()
    assert avail["locations"] == {"north": 900, "south": 100}


async def test_transfer_cancel_short_stock_and_unknown(api: Api) -> None:
    await inbound(api, "B", "north", 5)
    c, wh = api.client, api.auth("warehouse")
    body = {"transfer_id": "t2", "sku": "B", "from_location": "north", "to_location": "south"}

    short = await c.post("/v1/transfers", json={**body, "qty": 6}, headers=wh)
    same_place = await c.post(
        "/v1/transfers", json={**body, "qty": 1, "to_location": "north"}, headers=wh
    )
    await c.post("/v1/transfers", json={**body, "qty": 5}, headers=wh)
    cancelled = await c.post("/v1/transfers/t2/cancel", headers=wh)
    unknown = await c.post("/v1/transfers/nope/ship", headers=wh)

    assert short.status_code == 409 and short.json()["code"] == "insufficient_stock"
    assert same_place.status_code == 422
    assert cancelled.json()["status"] == "cancelled"
    assert (await c.get("/v1/availability/B", headers=api.auth("read"))).json()["available"] == 5
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


async def test_movements_come_from_the_ledger_newest_first(api: Api) -> None:
    """Rows as the write-behind worker records them; the route only reads PostgreSQL."""
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    rows = [
        {
            "op_id": f"inbound:r{i}",
            "sku": sku,
            "location": loc,
            "type": "inbound",
            "reason": "inbound",
            "ref": f"r{i}",
            "delta_on_hand": i,
            "delta_locked": 0,
            "on_hand_after": i,
            "locked_after": 0,
            "safety_stock_after": 0,
            "version": i,
            "created_at": t0 + timedelta(seconds=i),
            "stream_id": f"{i}-0",
        }
        for i, (sku, loc) in enumerate(
            [("mv-A", "north"), ("mv-A", "south"), ("mv-B", "north"), ("mv-A", "north")], start=1
        )
    ]
    with api.db.begin() as conn:
        conn.execute(insert(Movement), rows)
    read = api.auth("read")

    all_a = (await api.client.get("/v1/movements?sku=mv-A", headers=read)).json()["items"]
    north = (await api.client.get("/v1/movements?sku=mv-A&location=north", headers=read)).json()
    first = (await api.client.get("/v1/movements?sku=mv-A&limit=1", headers=read)).json()
    page = await api.client.get(f"/v1/movements?sku=mv-A&before={all_a[0]['id']}", headers=read)

    assert [m["ref"] for m in all_a] == ["r4", "r2", "r1"]
    assert [m["ref"] for m in north["items"]] == ["r4", "r1"]
    assert [m["ref"] for m in first["items"]] == ["r4"]
    assert [m["ref"] for m in page.json()["items"]] == ["r2", "r1"]
    assert all_a[0] == {
        "id": all_a[0]["id"],
        "op_id": "inbound:r4",
        "sku": "mv-A",
        "location": "north",
        "type": "inbound",
        "reason": "inbound",
        "ref": "r4",
        "delta_on_hand": 4,
        "delta_locked": 0,
        "on_hand_after": 4,
        "locked_after": 0,
        "created_at": "2026-11-22T10:00:04.000Z",
    }
    bad_limit = await api.client.get("/v1/movements?limit=0", headers=read)
    assert bad_limit.status_code == 422


async def test_health_readiness_ping_and_metrics(api: Api) -> None:
    await inbound(api, "A", "north", 1)
    await api.client.post(
        "/v1/reservations",
        json={"order_id": "o", "lines": [{"sku": "A", "qty": 5}]},
        headers=api.auth("checkout"),
    )

    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}
    assert (await api.client.get("/v1/ping")).json() == {"status": "ok"}
    metrics = await api.client.get("/metrics")

    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'inventory_http_requests_total{method="POST",route="/v1/inbound",status="200"} 1.0' in text
    )
    assert 'inventory_reservations_total{result="insufficient_stock"} 1.0' in text
    assert 'inventory_engine_call_duration_seconds_count{op="inbound"} 1.0' in text
    assert "inventory_worker_lag_entries 0.0" in text
    assert "inventory_worker_lag_seconds 0.0" in text
    assert "inventory_postgres_up 1.0" in text and "inventory_redis_ready 1.0" in text
    assert 'inventory_near_cache_reads_total{outcome="miss"}' in text


async def test_worker_lag_counts_what_the_ledger_group_has_not_acknowledged(api: Api) -> None:
    """The gauge reads the streams' ledger group, whoever the worker is (or none at all),
    and is refreshed in the background, at most INVENTORY_STATUS_REFRESH_SECONDS late."""
    await inbound(api, "A", "north", 1, ref="r1")
    stream = api.engine.keys.events(api.engine.keys.group_of("A"))
    await api.engine.client.xgroup_create(stream, GROUP, id="0")
    await inbound(api, "A", "north", 1, ref="r2")

    assert await metric_soon(api, "inventory_worker_lag_entries", 2)
    await api.engine.client.xreadgroup(GROUP, "c", {stream: ">"}, count=1)
    assert await metric_soon(api, "inventory_worker_lag_entries", 2)  # delivered, not acked
    assert await metric_soon(api, "inventory_worker_lag_seconds", lambda v: v > 0)
    (entry,) = await api.engine.client.xrange(stream, count=1)
    await api.engine.client.xack(stream, GROUP, entry[0])
    assert await metric_soon(api, "inventory_worker_lag_entries", 1)
    for e in await api.engine.client.xrange(stream):
        await api.engine.client.xack(stream, GROUP, e[0])
    await api.engine.client.xreadgroup(GROUP, "c", {stream: ">"})
    for e in await api.engine.client.xrange(stream):
        await api.engine.client.xack(stream, GROUP, e[0])
    assert await metric_soon(api, "inventory_worker_lag_entries", 0)
    assert await metric_soon(api, "inventory_worker_lag_seconds", 0)


async def readyz_soon(api: Api, status: int, within_s: float = 10) -> Any:
    """`/readyz` once it answers `status` (or the last answer after `within_s`)."""
    deadline = time.monotonic() + within_s
    while True:
        r = await api.client.get("/readyz")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


async def metric_soon(
    api: Api, name: str, want: float | Callable[[float], bool], within_s: float = 10
) -> bool:
    """True once `/metrics` shows `name` at `want` (the monitor refreshes each second)."""
    check = want if callable(want) else (lambda v: v == want)
    deadline = time.monotonic() + within_s
    while True:
        text = (await api.client.get("/metrics")).text
        (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
        if check(float(line.split()[1])):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


async def test_unloaded_redis_makes_readyz_and_writes_answer_503(api: Api) -> None:
    sku = next(f"S{i}" for i in range(1000) if api.engine.keys.group_of(f"S{i}") == 3)
    await api.engine.client.delete(api.engine.keys.ready(3))

    r = await readyz_soon(api, 503)  # readiness is measured each second in the background
    write = await api.client.post(
        "/v1/inbound",
        json={"ref": "p", "sku": sku, "location": "north", "qty": 1},
        headers=api.auth("warehouse"),
    )
    read = await api.client.get(f"/v1/availability/{sku}", headers=api.auth("read"))

    assert r.status_code == 503
    assert r.json()["code"] == "not_ready" and r.json()["redis"] is False
    assert r.json()["postgres"] is True
    for refused in (write, read):
        assert refused.status_code == 503 and refused.json()["code"] == "not_ready"
