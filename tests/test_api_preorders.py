"""`POST /v1/incoming` (and its receive and cancel), the policy's `preorder_limit`, pre-order
lines in reservation answers and `available_to_promise`, through the app on real Redis and
PostgreSQL: bad input is a 422 that changes nothing, a closed record is a 409."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api, assert_problem

PO = {"ref": "po-1", "sku": "phone-a", "location": "north", "qty": 5, "expected_at": "2027-01-15"}


async def post_incoming(api: Api, **changes: Any) -> Any:
    return await api.client.post(
        "/v1/incoming", json={**PO, **changes}, headers=api.auth("warehouse")
    )


async def test_incoming_stock_is_created_changed_shown_and_received(api: Api) -> None:
    c, wh = api.client, api.auth("warehouse")

    created = await post_incoming(api)
    same = await post_incoming(api)
    changed = await post_incoming(api, qty=6, expected_at="2027-01-20T10:00:00+01:00")
    shown = await c.get("/v1/incoming/po-1", headers=api.auth("read"))
    received = await c.post("/v1/incoming/po-1/receive", json={"qty": 4}, headers=wh)
    again = await c.post("/v1/incoming/po-1/receive", json={"qty": 4}, headers=wh)
    cancel = await c.post("/v1/incoming/po-1/cancel", headers=wh)

    assert (created.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert created.json() == {
        "ref": "po-1",
        "sku": "phone-a",
        "location": "north",
        "qty": 5,
        "expected_at": "2027-01-15T00:00:00.000Z",
        "status": "open",
        "received_qty": 0,
        "preorders": [],
    }
    assert shown.json()["expected_at"] == "2027-01-20T09:00:00.000Z"
    assert (received.status_code, received.json()["status"]) == (200, "received")
    assert (again.status_code, again.json()["received_qty"]) == (200, 4)
    assert_problem(cancel, 409, "invalid_state")
    stock = await c.get("/v1/stock/phone-a", headers=api.auth("read"))
    assert stock.json()["locations"]["north"]["on_hand"] == 4


async def test_bad_incoming_input_is_422_and_records_nothing(api: Api) -> None:
    for bad in (
        {"expected_at": "next tuesday"},
        {"qty": 0},
        {"sku": "bad sku"},
        {"expected_at": None},
    ):
        assert_problem(await post_incoming(api, **bad), 422, "validation_error")
    r = await api.client.get("/v1/incoming/po-1", headers=api.auth("read"))
    assert_problem(r, 404, "not_found")
    r = await api.client.post(
        "/v1/incoming/po-1/receive", json={"qty": -1}, headers=api.auth("warehouse")
    )
    assert_problem(r, 422, "validation_error")


async def test_incoming_needs_the_warehouse_scope(api: Api) -> None:
    r = await api.client.post("/v1/incoming", json=PO, headers=api.auth("checkout"))
    assert_problem(r, 403, "forbidden")


async def test_a_pre_order_is_taken_shown_and_promised_by_date(api: Api) -> None:
    c = api.client
    await api.engine.inbound(ref="start", sku="phone-a", location="north", qty=1)
    await post_incoming(api)
    policy = await c.put(
        "/v1/policies/phone-a/north", json={"preorder_limit": 3}, headers=api.auth("admin")
    )
    assert policy.json()["preorder_limit"] == 3
    shown = await c.get("/v1/policies/phone-a/north", headers=api.auth("read"))
    assert shown.json()["preorder_limit"] == 3

    r = await c.post(
        "/v1/reservations",
        json={"order_id": "o1", "lines": [{"sku": "phone-a", "qty": 3}]},
        headers=api.auth("checkout"),
    )
    over = await c.post(
        "/v1/reservations",
        json={"order_id": "o2", "lines": [{"sku": "phone-a", "qty": 2}]},
        headers=api.auth("checkout"),
    )
    availability = await c.get("/v1/availability/phone-a", headers=api.auth("read"))

    assert r.status_code == 201
    assert r.json()["lines"] == [
        {"sku": "phone-a", "qty": 1, "location": "north"},
        {
            "sku": "phone-a",
            "qty": 2,
            "location": "north",
            "preorder": True,
            "expected_at": "2027-01-15T00:00:00.000Z",
            "preorder_status": "awaiting",
        },
    ]
    assert assert_problem(over, 409, "insufficient_stock")["lines"] == [
        {"sku": "phone-a", "requested": 2, "available": 1}
    ]
    assert availability.json() == {
        "sku": "phone-a",
        "available": 0,
        "in_stock": False,
        "locations": {"north": 0},
        "available_to_promise": [{"date": "2027-01-15", "qty": 3}],
    }
    ship = await c.post("/v1/reservations/o1/ship", headers=api.auth("warehouse"))
    assert assert_problem(ship, 409, "invalid_state")["reservation_status"] == "active"
    received = await c.post("/v1/incoming/po-1/receive", headers=api.auth("warehouse"))
    assert received.json()["preorders"] == [
        {
            "order_id": "o1",
            "sku": "phone-a",
            "location": "north",
            "qty": 2,
            "expected_at": "2027-01-15T00:00:00.000Z",
            "state": "locked",
        }
    ]
    shipped = await c.post("/v1/reservations/o1/ship", headers=api.auth("warehouse"))
    assert shipped.json()["status"] == "shipped"
    assert [ln.get("preorder") for ln in shipped.json()["lines"]] == [None, True]
