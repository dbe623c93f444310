"""`POST /v1/subscriptions` and `GET /v1/subscriptions/{id}`: notify me when back in stock."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from inventory_cache.subscriptions import BackInStock
from tests.support.api import Api


@pytest.fixture
async def hooks_api(api: Api) -> Api:
    api.app.state.services.settings.webhook_allowed_hosts = ["hooks.example.com"]
    return api


async def test_subscribe_once_then_see_it_notified(hooks_api: Api) -> None:
    api, co = hooks_api, hooks_api.auth("checkout")
    body = {"sku": "sub-A", "subscriber_id": "customer-42"}

    first = await api.client.post("/v1/subscriptions", json=body, headers=co)
    again = await api.client.post("/v1/subscriptions", json=body, headers=co)
    hook = await api.client.post(
        "/v1/subscriptions",
        json={"sku": "sub-A", "webhook_url": "https://hooks.example.com/bis"},
        headers=co,
    )

    assert first.status_code == 201, first.text
    sub = first.json()
    assert {k: sub[k] for k in ("sku", "status", "subscriber_id")} == {
        "sku": "sub-A",
        "status": "pending",
        "subscriber_id": "customer-42",
    }
    assert "webhook_url" not in sub and "notified_at" not in sub
    assert (again.status_code, again.json()["id"]) == (200, sub["id"])
    assert hook.status_code == 201 and hook.json()["id"] != sub["id"]

    await api.engine.inbound(ref="in", sku="sub-A", location="north", qty=1)
    notified = await BackInStock(api.engine, sessionmaker(api.db, expire_on_commit=False)).tick()
    assert sub["id"] in {n.subscription_id for n in notified}

    seen = (await api.client.get(f"/v1/subscriptions/{sub['id']}", headers=co)).json()
    assert seen["status"] == "notified" and "notified_at" in seen


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "sub-B"},
        {"sku": "sub-B", "subscriber_id": "c", "webhook_url": "https://hooks.example.com/x"},
        {"sku": "sub-B", "webhook_url": "http://169.254.169.254/latest"},
        {"sku": "sub-B", "webhook_url": "https://hooks.example.com.evil.net/x"},
        {"sku": "sub-B", "subscriber_id": None},
        {"sku": "bad sku", "subscriber_id": "c"},
    ],
)
async def test_bad_subscriptions_are_422(hooks_api: Api, body: dict[str, Any]) -> None:
    r = await hooks_api.client.post(
        "/v1/subscriptions", json=body, headers=hooks_api.auth("checkout")
    )

    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text


async def test_subscriptions_need_the_checkout_scope(api: Api) -> None:
    body = {"sku": "sub-C", "subscriber_id": "c"}
    assert (await api.client.post("/v1/subscriptions", json=body)).status_code == 401
    r = await api.client.post("/v1/subscriptions", json=body, headers=api.auth("read"))
    assert r.status_code == 403
    missing = await api.client.get("/v1/subscriptions/999999", headers=api.auth("checkout"))
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize("subscription_id", ["a b", "x" * 65, "sub-1%0A"])
async def test_a_malformed_subscription_id_is_422(api: Api, subscription_id: str) -> None:
    r = await api.client.get(f"/v1/subscriptions/{subscription_id}", headers=api.auth("checkout"))

    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text


async def test_the_repeated_subscriptions_200_is_documented(api: Api) -> None:
    op = api.app.openapi()["paths"]["/v1/subscriptions"]["post"]["responses"]

    assert {"200", "201"} <= op.keys()
    schema = op["200"]["content"]["application/json"]["schema"]
    assert schema == op["201"]["content"]["application/json"]["schema"]
