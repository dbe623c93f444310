"""`POST /v1/pos/events` and `/v1/barcodes` through the app, on real Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api


async def inbound(api: Api, sku: str, location: str, qty: int) -> None:
    body = {"ref": "po", "sku": sku, "location": location, "qty": qty}
    r = await api.client.post("/v1/inbound", json=body, headers=api.auth("warehouse"))
    assert r.status_code == 200, r.text


async def post_batch(api: Api, location: Any, events: Any, scope: str = "warehouse") -> Any:
    return await api.client.post(
        "/v1/pos/events", json={"location": location, "events": events}, headers=api.auth(scope)
    )


async def test_a_batch_answers_one_result_per_event_and_a_bad_one_fails_alone(api: Api) -> None:
    wh = api.auth("warehouse")
    put = await api.client.put("/v1/barcodes/4006381333931", json={"sku": "pen"}, headers=wh)
    assert put.status_code == 200, put.text
    await inbound(api, "pen", "store-1", 10)
    events = [
        {"event_id": "e1", "type": "sale", "barcode": "4006381333931", "qty": 2},
        {"event_id": "e2", "type": "sale", "barcode": "4006381333932", "qty": 1},
        {"event_id": "e3", "type": "count", "sku": "pen", "qty": 5},
        {"event_id": "e4", "type": "return", "sku": "pen", "qty": "1"},
    ]

    r = await post_batch(api, "store-1", events)

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["location"], body["applied"], body["replayed"], body["failed"]) == (
        "store-1",
        2,
        0,
        2,
    )
    assert body["results"][0] == {
        "index": 0,
        "event_id": "e1",
        "status": "applied",
        "sku": "pen",
        "location": "store-1",
        "on_hand": 8,
        "locked": 0,
        "safety_stock": 0,
        "available": 8,
        "oversold": 0,
    }
    bad_digit = body["results"][1]
    assert (bad_digit["status"], bad_digit["code"], bad_digit["field"]) == (
        "error",
        "validation_error",
        "events[1].barcode",
    )
    assert body["results"][2]["on_hand"] == 5
    assert (body["results"][3]["code"], body["results"][3]["field"]) == (
        "validation_error",
        "events[3].qty",
    )
    stock = (await api.client.get("/v1/stock/pen", headers=api.auth("read"))).json()
    assert stock["locations"]["store-1"]["on_hand"] == 5


async def test_a_batch_sent_three_more_times_is_replayed_not_applied(api: Api) -> None:
    await inbound(api, "cup", "store-1", 10)
    events = [{"event_id": f"r{i}", "type": "sale", "sku": "cup", "qty": 1} for i in range(4)]
    first = await post_batch(api, "store-1", events)

    again = [await post_batch(api, "store-1", events) for _ in range(3)]

    assert first.json()["applied"] == 4 and "idempotent-replayed" not in first.headers
    for r in again:
        assert (r.json()["applied"], r.json()["replayed"]) == (0, 4)
        assert r.headers["idempotent-replayed"] == "true"
    stock = (await api.client.get("/v1/stock/cup", headers=api.auth("read"))).json()
    assert stock["locations"]["store-1"]["on_hand"] == 6


@pytest.mark.parametrize(
    ("location", "events"),
    [
        ("store 1", [{"event_id": "e1", "type": "sale", "sku": "cup", "qty": 1}]),
        ("store-1", []),
        (
            "store-1",
            [{"event_id": f"e{i}", "type": "sale", "sku": "c", "qty": 1} for i in range(1001)],
        ),
        ("store-1", [{"event_id": "e1", "type": "sale", "sku": "cup", "qty": 1}, 5]),
    ],
)
async def test_a_malformed_batch_is_422_whole(api: Api, location: str, events: Any) -> None:
    r = await post_batch(api, location, events)

    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "validation_error"


async def test_an_event_of_unknown_type_refuses_the_batch_whole(api: Api) -> None:
    await inbound(api, "mug", "store-1", 10)
    events = [
        {"event_id": "t1", "type": "sale", "sku": "mug", "qty": 1},
        {"event_id": "t2", "type": "refund", "sku": "mug", "qty": 1},
    ]

    r = await post_batch(api, "store-1", events)

    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text
    assert r.json()["field"] == "events.1.type"
    stock = (await api.client.get("/v1/stock/mug", headers=api.auth("read"))).json()
    assert stock["locations"]["store-1"]["on_hand"] == 10


async def test_pos_wants_the_warehouse_scope(api: Api) -> None:
    events = [{"event_id": "e1", "type": "sale", "sku": "cup", "qty": 1}]

    assert (await post_batch(api, "store-1", events, scope="checkout")).status_code == 403
    assert (await post_batch(api, "store-1", events, scope="admin")).status_code == 200


async def test_barcodes_put_get_delete(api: Api) -> None:
    wh, rd = api.auth("warehouse"), api.auth("read")

    put = await api.client.put("/v1/barcodes/036000291452", json={"sku": "tee"}, headers=wh)
    got = await api.client.get("/v1/barcodes/0036000291452", headers=rd)
    deleted = await api.client.delete("/v1/barcodes/00036000291452", headers=wh)
    gone = await api.client.get("/v1/barcodes/036000291452", headers=rd)

    assert (put.status_code, put.json()) == (200, {"barcode": "00036000291452", "sku": "tee"})
    assert (got.status_code, got.json()) == (200, {"barcode": "00036000291452", "sku": "tee"})
    assert deleted.status_code == 204
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")


async def test_barcode_errors_and_scopes(api: Api) -> None:
    wh, rd = api.auth("warehouse"), api.auth("read")

    bad = await api.client.get("/v1/barcodes/036000291453", headers=rd)
    by_reader = await api.client.put("/v1/barcodes/036000291452", json={"sku": "x"}, headers=rd)
    bad_sku = await api.client.put("/v1/barcodes/036000291452", json={"sku": "a b"}, headers=wh)

    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    assert "check digit" in bad.json()["detail"]
    assert (by_reader.status_code, by_reader.json()["code"]) == (403, "forbidden")
    assert (bad_sku.status_code, bad_sku.json()["code"]) == (422, "validation_error")
