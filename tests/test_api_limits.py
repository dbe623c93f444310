"""`PUT/GET/DELETE /v1/limits/{sku}` and reservations with a `customer_id`, through the app on
real Redis and PostgreSQL: bad input is a 422 that changes nothing, an order over the limit
is a 409 `limit_exceeded` naming what the customer may still take."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api


async def reserve(api: Api, order_id: str, qty: int, **extra: Any) -> Any:
    return await api.client.post(
        "/v1/reservations",
        json={"order_id": order_id, "lines": [{"sku": "phone-a", "qty": qty}], **extra},
        headers=api.auth("checkout"),
    )


async def test_a_limit_is_set_shown_enforced_and_removed(api: Api) -> None:
    c, admin, read = api.client, api.auth("admin"), api.auth("read")
    await api.engine.inbound(ref="po", sku="phone-a", location="north", qty=10)
    assert (await c.get("/v1/limits/phone-a", headers=read)).status_code == 404

    put = await c.put("/v1/limits/phone-a", json={"per_customer": 2}, headers=admin)

    assert (put.status_code, put.json()) == (200, {"sku": "phone-a", "per_customer": 2})
    assert (await reserve(api, "o1", 1, customer_id="c-1")).status_code == 201
    shown = await c.get("/v1/limits/phone-a", params={"customer_id": "c-1"}, headers=read)
    assert shown.json() == {
        "sku": "phone-a",
        "per_customer": 2,
        "customer_id": "c-1",
        "held": 1,
        "allowed": 1,
    }
    over = await reserve(api, "o2", 2, customer_id="c-1")
    assert over.status_code == 409
    assert over.headers["content-type"] == "application/problem+json"
    assert over.json() == {
        "type": "urn:inventory-cache:problem:limit_exceeded",
        "title": "Per-customer limit exceeded",
        "status": 409,
        "detail": "over the per-customer limit for: phone-a (requested 2, allowed 1)",
        "code": "limit_exceeded",
        "lines": [{"sku": "phone-a", "requested": 2, "allowed": 1}],
    }
    windowed = await c.put(
        "/v1/limits/phone-a", json={"per_customer": 3, "window_seconds": 60}, headers=admin
    )
    assert windowed.json() == {"sku": "phone-a", "per_customer": 3, "window_seconds": 60}

    assert (await c.delete("/v1/limits/phone-a", headers=admin)).status_code == 204
    assert (await c.get("/v1/limits/phone-a", headers=read)).status_code == 404
    assert (await c.delete("/v1/limits/phone-a", headers=admin)).status_code == 404
    assert (await reserve(api, "o3", 5)).status_code == 201


async def test_a_limited_sku_without_customer_id_is_422_and_locks_nothing(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="phone-a", location="north", qty=10)
    await api.engine.set_limit(sku="phone-a", per_customer=2)

    r = await reserve(api, "o1", 1)

    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == ("validation_error", "customer_id")
    stock = (await api.client.get("/v1/stock/phone-a", headers=api.auth("read"))).json()
    assert stock["locations"]["north"]["locked"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"per_customer": 0},
        {"per_customer": -1},
        {"per_customer": "2"},
        {"per_customer": 2.5},
        {"per_customer": 2, "window_seconds": 0},
        {"per_customer": 2, "window_seconds": None},
        {"per_customer": 2, "per_order": 1},
        {},
    ],
)
async def test_a_bad_limit_is_422_and_changes_nothing(api: Api, body: dict[str, Any]) -> None:
    r = await api.client.put("/v1/limits/phone-a", json=body, headers=api.auth("admin"))

    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    assert (await api.client.get("/v1/limits/phone-a", headers=api.auth("read"))).status_code == 404


async def test_only_admin_keys_set_limits_and_customer_ids_are_identifiers(api: Api) -> None:
    r = await api.client.put(
        "/v1/limits/phone-a", json={"per_customer": 2}, headers=api.auth("checkout")
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    bad = await reserve(api, "o1", 1, customer_id="c 1")
    assert (bad.status_code, bad.json()["field"]) == (422, "customer_id")
