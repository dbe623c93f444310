"""Policies and alerts over HTTP: `PUT /v1/policies/{sku}/{location}`, `GET /v1/alerts`."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from inventory_cache.alerts import AlertMonitor
from inventory_cache.models import LineRequest
from tests.support.api import Api


async def test_put_policy_stores_it_and_holds_back_its_safety_stock(api: Api) -> None:
    await api.engine.inbound(ref="in", sku="pol-A", location="north", qty=10)
    body = {"safety_stock": 3, "reorder_point": 2, "reorder_qty": 20, "lead_time_days": 7}

    r = await api.client.put("/v1/policies/pol-A/north", json=body, headers=api.auth("admin"))

    assert r.status_code == 200, r.text
    out = r.json()
    assert {k: out[k] for k in body} == body
    assert out["levels"] == {
        "sku": "pol-A",
        "location": "north",
        "on_hand": 10,
        "locked": 0,
        "safety_stock": 3,
        "available": 7,
    }
    avail = await api.client.get("/v1/availability/pol-A", headers=api.auth("read"))
    assert avail.json()["available"] == 7
    stored = await api.client.get("/v1/policies/pol-A/north", headers=api.auth("read"))
    assert {k: stored.json()[k] for k in body} == body

    lower = {**body, "safety_stock": 0}
    r = await api.client.put("/v1/policies/pol-A/north", json=lower, headers=api.auth("admin"))
    assert r.json()["levels"]["available"] == 10


async def test_put_policy_needs_admin_and_valid_numbers(api: Api) -> None:
    c, url = api.client, "/v1/policies/pol-B/north"
    ok = {"safety_stock": 1, "reorder_point": 1, "reorder_qty": 1, "lead_time_days": 1}

    assert (await c.put(url, json=ok)).status_code == 401
    assert (await c.put(url, json=ok, headers=api.auth("warehouse"))).status_code == 403
    for bad in ({"safety_stock": -1}, {"reorder_point": "5"}, {"lead_time_days": 1.5}, {"x": 1}):
        r = await c.put(url, json=bad, headers=api.auth("admin"))
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad
    r = await c.put("/v1/policies/bad%20sku/north", json=ok, headers=api.auth("admin"))
    assert r.status_code == 422
    missing = await c.get("/v1/policies/pol-B/north", headers=api.auth("read"))
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


async def test_raising_a_reorder_point_above_the_stock_alerts_at_once(api: Api) -> None:
    await api.engine.inbound(ref="in", sku="pol-C", location="north", qty=4)
    body = {"reorder_point": 5}

    await api.client.put("/v1/policies/pol-C/north", json=body, headers=api.auth("admin"))
    r = await api.client.get("/v1/alerts?sku=pol-C", headers=api.auth("read"))

    assert r.status_code == 200
    (alert,) = r.json()["items"]
    assert alert["kind"] == "low_stock" and alert["active"] is True
    assert alert["details"] == {"available": 4, "reorder_point": 5}
    assert "cleared_at" not in alert


async def test_alerts_lists_active_ones_and_cleared_ones_on_request(api: Api) -> None:
    monitor = AlertMonitor(api.engine, sessionmaker(api.db, expire_on_commit=False))
    await monitor.tick()
    await api.engine.inbound(ref="in", sku="pol-D", location="north", qty=2)
    await api.engine.reserve(order_id="pol-D-o1", lines=[LineRequest("pol-D", 2)])
    await api.engine.pos_event(event_id="t1", type="sale", sku="pol-D", location="north", qty=1)
    await monitor.tick()
    await api.engine.cancel("pol-D-o1")
    await monitor.tick()
    await api.engine.reserve(order_id="pol-D-o2", lines=[LineRequest("pol-D", 1)])
    await api.engine.pos_event(event_id="t2", type="sale", sku="pol-D", location="north", qty=1)
    await monitor.tick()
    read = api.auth("read")

    active = (await api.client.get("/v1/alerts?sku=pol-D", headers=read)).json()["items"]
    every = (await api.client.get("/v1/alerts?sku=pol-D&active=false", headers=read)).json()

    assert [(a["kind"], a["active"], a["details"]["shortfall"]) for a in active] == [
        ("oversold", True, 1)
    ]
    assert [(a["active"], "cleared_at" in a) for a in every["items"]] == [
        (True, False),
        (False, True),
    ]
    assert (await api.client.get("/v1/alerts")).status_code == 401
    bad = await api.client.get("/v1/alerts?kind=nope", headers=read)
    assert bad.status_code == 422
