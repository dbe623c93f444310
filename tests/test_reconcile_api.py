"""`POST /v1/reconcile` and `GET /v1/reconcile/{run_id}` against the simulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from wms_simulator import HttpSink, WmsSimulator, serve

from tests.support.api import Api, Database, serving


@pytest.fixture
async def wms_api(
    real_redis: Any, prefix: str, api_database: Database
) -> AsyncIterator[tuple[Api, WmsSimulator]]:
    sim = WmsSimulator()
    server = serve(sim)
    url = f"http://127.0.0.1:{server.server_address[1]}/snapshot"
    try:
        async with serving(real_redis, prefix, api_database, wms_url=url) as api:
            yield api, sim
    finally:
        server.shutdown()
        server.server_close()


async def seed(api: Api, sim: WmsSimulator) -> None:
    for i in range(10):
        await api.engine.inbound(ref="seed", sku=f"rc-{i}", location="north", qty=20)
        sim.seed(f"rc-{i}", "north", 20)
    sim.drift("rc-2", "north", -3)
    sim.drift("rc-7", "north", 4)


async def test_a_run_reports_the_drift_and_is_kept(wms_api: tuple[Api, WmsSimulator]) -> None:
    api, sim = wms_api
    await seed(api, sim)
    admin = api.auth("admin")

    r = await api.client.post("/v1/reconcile", json={"mode": "report"}, headers=admin)

    assert r.status_code == 201, r.text
    run = r.json()
    assert (run["status"], run["mode"]) == ("done", "report")
    assert run["source"].startswith("http:http://127.0.0.1:")
    assert run["diffs"] == [
        {
            "sku": "rc-2",
            "location": "north",
            "ours": 20,
            "wms": 17,
            "diff": 3,
            "kind": "oversell_risk",
        },
        {
            "sku": "rc-7",
            "location": "north",
            "ours": 20,
            "wms": 24,
            "diff": -4,
            "kind": "undersell",
        },
    ]
    assert run["summary"]["checked"] == 10
    kept = await api.client.get(f"/v1/reconcile/{run['run_id']}", headers=admin)
    assert kept.json() == run


async def test_correct_mode_fixes_and_the_next_run_is_clean(
    wms_api: tuple[Api, WmsSimulator],
) -> None:
    api, sim = wms_api
    await seed(api, sim)
    admin = api.auth("admin")

    fixed = await api.client.post("/v1/reconcile", json={"mode": "correct"}, headers=admin)
    clean = await api.client.post("/v1/reconcile", headers=admin)  # the default mode: report

    assert fixed.json()["summary"]["corrected"] == 2
    assert (clean.json()["mode"], clean.json()["diffs"]) == ("report", [])
    stock = await api.client.get("/v1/stock/rc-7", headers=api.auth("read"))
    assert stock.json()["locations"]["north"]["on_hand"] == 24


async def test_a_run_without_waiting_is_polled_until_done(
    wms_api: tuple[Api, WmsSimulator],
) -> None:
    api, sim = wms_api
    await seed(api, sim)
    admin = api.auth("admin")

    started = await api.client.post("/v1/reconcile?wait=false", headers=admin)
    run_id = started.json()["run_id"]
    seen = []
    for _ in range(100):
        run = (await api.client.get(f"/v1/reconcile/{run_id}", headers=admin)).json()
        seen.append(run["status"])
        if run["status"] != "running":
            break
        await asyncio.sleep(0.05)

    assert started.status_code == 202
    assert started.json()["status"] == "running"
    assert seen[-1] == "done"
    assert [d["sku"] for d in run["diffs"]] == ["rc-2", "rc-7"]


async def test_reconcile_is_admin_only_and_a_missing_wms_is_a_configuration_error(
    api: Api,
) -> None:
    """Not 503 `not_ready`: no retry helps until an operator configures a WMS."""
    c = api.client
    assert (await c.post("/v1/reconcile", headers=api.auth("warehouse"))).status_code == 403
    r = await c.post("/v1/reconcile", headers=api.auth("admin"))
    assert (r.status_code, r.json()["code"]) == (409, "invalid_state")
    assert r.json()["title"] == "No WMS configured"
    assert "INVENTORY_WMS_URL or INVENTORY_WMS_CSV_PATH" in r.json()["detail"]
    missing = await c.get("/v1/reconcile/r-nope", headers=api.auth("admin"))
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    bad = await c.post("/v1/reconcile", json={"mode": "fix"}, headers=api.auth("admin"))
    assert bad.status_code == 422


async def test_the_simulator_reports_its_receipts_and_shipments_through_the_api(
    wms_api: tuple[Api, WmsSimulator],
) -> None:
    api, sim = wms_api
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app),
        base_url="http://api",
        headers=api.auth("admin"),
    )
    sim.receive(ref="rcv-1", sku="hs-A", location="north", qty=5)
    await api.client.post(
        "/v1/reservations",
        json={"order_id": "hs-o1", "lines": [{"sku": "hs-A", "qty": 2, "location": "north"}]},
        headers=api.auth("checkout"),
    )  # refused: nothing received yet

    async with client:
        await sim.deliver(HttpSink(client))
        r = await client.post(
            "/v1/reservations",
            json={"order_id": "hs-o2", "lines": [{"sku": "hs-A", "qty": 2}]},
        )
        sim.ship_order("hs-o2", [("hs-A", "north", 2)])
        sim.ship_order("hs-o1", [])  # never reserved here: the sink skips its 404/409
        delivered = await sim.deliver(HttpSink(client))

    assert r.status_code == 201
    assert delivered == 2 and sim.outbox == []
    stock = await api.client.get("/v1/stock/hs-A", headers=api.auth("read"))
    assert stock.json()["locations"]["north"] == {
        "on_hand": 3,
        "locked": 0,
        "safety_stock": 0,
        "available": 3,
    }
    assert sim.stock[("hs-A", "north")] == 3
