"""Bundles through the HTTP API on real Redis and PostgreSQL: the admin routes, their 422s,
a bundle's availability, a reservation with a bundle line, and its ledger rows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Api, Database, let_the_window_pass
from tests.support.postgres import drain_into_ledger
from tests.support.redis_state import skus_in_distinct_groups


async def inbound(api: Api, sku: str, location: str, qty: int) -> None:
    r = await api.client.post(
        "/v1/inbound",
        json={"ref": f"po-{sku}-{location}", "sku": sku, "location": location, "qty": qty},
        headers=api.auth("warehouse"),
    )
    assert r.status_code == 200, r.text


async def put_kit(api: Api, components: Any) -> Any:
    return await api.client.put(
        "/v1/bundles/kit", json={"components": components}, headers=api.auth("admin")
    )


async def test_admin_defines_shows_and_deletes_a_bundle(api: Api) -> None:
    made = await put_kit(api, [{"sku": "B", "qty": 2}, {"sku": "A", "qty": 1}])
    shown = await api.client.get("/v1/bundles/kit", headers=api.auth("read"))
    by_checkout = await put_kit_as(api, "checkout")
    gone = await api.client.delete("/v1/bundles/kit", headers=api.auth("admin"))
    again = await api.client.delete("/v1/bundles/kit", headers=api.auth("admin"))
    missing = await api.client.get("/v1/bundles/kit", headers=api.auth("read"))

    want = {"sku": "kit", "components": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}
    assert made.status_code == 200 and made.json() == {**want, "version": 1}
    assert shown.json() == {**want, "version": 1}
    assert by_checkout.status_code == 403
    assert gone.status_code == 204
    assert (again.status_code, again.json()["code"]) == (404, "not_found")
    assert missing.status_code == 404


async def put_kit_as(api: Api, scope: str) -> Any:
    return await api.client.put(
        "/v1/bundles/kit", json={"components": [{"sku": "A", "qty": 1}]}, headers=api.auth(scope)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"components": []},
        {"components": [{"sku": f"s{i}", "qty": 1} for i in range(21)]},
        {"components": [{"sku": "A", "qty": 1}, {"sku": "A", "qty": 1}]},
        {"components": [{"sku": "kit", "qty": 1}]},
        {"components": [{"sku": "inner", "qty": 1}]},
        {"components": [{"sku": "A", "qty": 0}]},
        {"components": [{"sku": "A", "qty": "1"}]},
        {"components": [{"sku": "A"}]},
        {"components": [{"sku": "A", "qty": 1, "extra": 1}]},
        {},
    ],
    ids=[
        "none",
        "21",
        "duplicate",
        "itself",
        "a-bundle",
        "qty-0",
        "qty-string",
        "no-qty",
        "unknown-field",
        "no-components",
    ],
)
async def test_a_bad_definition_is_422_and_changes_nothing(api: Api, body: Any) -> None:
    await api.client.put(
        "/v1/bundles/inner",
        json={"components": [{"sku": "C", "qty": 1}]},
        headers=api.auth("admin"),
    )
    await put_kit(api, [{"sku": "A", "qty": 1}])

    r = await api.client.put("/v1/bundles/kit", json=body, headers=api.auth("admin"))

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "validation_error"
    shown = await api.client.get("/v1/bundles/kit", headers=api.auth("read"))
    assert shown.json() == {"sku": "kit", "components": [{"sku": "A", "qty": 1}], "version": 1}


async def test_a_bundle_is_sold_by_its_components_and_the_ledger_names_it(
    api: Api, api_database: Database
) -> None:
    await put_kit(api, [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}])
    await inbound(api, "A", "north", 5)
    await inbound(api, "B", "north", 6)
    await inbound(api, "B", "south", 3)
    checkout = api.auth("checkout")
    order = {"order_id": "o1", "lines": [{"sku": "kit", "qty": 2}, {"sku": "B", "qty": 1}]}

    avail = (await api.client.get("/v1/availability/kit", headers=api.auth("read"))).json()
    first = await api.client.post("/v1/reservations", json=order, headers=checkout)
    retry = await api.client.post("/v1/reservations", json=order, headers=checkout)
    shown = await api.client.get("/v1/reservations/o1", headers=checkout)
    shipped = await api.client.post("/v1/reservations/o1/ship", headers=api.auth("warehouse"))

    assert avail == {
        "sku": "kit",
        "available": 4,
        "in_stock": True,
        "locations": {"north": 3, "south": 0},
    }
    assert first.status_code == 201, first.text
    body = first.json()
    assert sorted(body["lines"], key=lambda x: x["sku"]) == [
        {"sku": "A", "qty": 2, "location": "north"},
        {"sku": "B", "qty": 5, "location": "north"},
    ]
    assert body["bundles"] == [
        {"sku": "kit", "qty": 2, "components": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 4}]}
    ]
    assert retry.status_code == 201 and retry.headers.get("idempotent-replayed") == "true"
    assert retry.json() == body
    assert shown.json() == body
    assert shipped.json()["bundles"] == body["bundles"]

    drain_into_ledger(api.engine.settings, api_database.url)
    read = api.auth("read")
    rows = (await api.client.get("/v1/movements?sku=B", headers=read)).json()["items"]
    by_type = {(m["type"], m["location"]): m.get("bundle") for m in rows}
    assert by_type == {
        ("ship", "north"): "kit",
        ("reserve", "north"): "kit",
        ("inbound", "north"): None,
        ("inbound", "south"): None,
    }


async def test_a_bundle_order_past_the_window_is_answered_from_postgresql_with_its_bundles(
    api: Api, api_database: Database
) -> None:
    a, c = skus_in_distinct_groups(api.engine, 2)
    await put_kit(api, [{"sku": a, "qty": 1}, {"sku": c, "qty": 3}])
    await inbound(api, a, "north", 5)
    await inbound(api, c, "north", 9)
    checkout = api.auth("checkout")
    order = {"order_id": "kit-order", "lines": [{"sku": "kit", "qty": 2}]}
    await api.client.post("/v1/reservations", json=order, headers=checkout)
    shipped = await api.client.post(
        "/v1/reservations/kit-order/ship", headers=api.auth("warehouse")
    )
    drain_into_ledger(api.engine.settings, api_database.url)

    await let_the_window_pass(api, "kit-order")
    archived = await api.client.get("/v1/reservations/kit-order", headers=checkout)

    assert archived.status_code == 200
    assert archived.json() == shipped.json()
    assert archived.json()["bundles"] == [
        {
            "sku": "kit",
            "qty": 2,
            "components": sorted(
                [{"sku": a, "qty": 2}, {"sku": c, "qty": 6}], key=lambda x: str(x["sku"])
            ),
        }
    ]
