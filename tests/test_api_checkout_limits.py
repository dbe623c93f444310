"""Checkout over HTTP under pressure: lines in flight per API key, and settling an order
whose reservation attempt has not finished."""

from __future__ import annotations

import orjson
import pytest

from inventory_cache import script_calls as sc
from inventory_cache.api.deps import Services
from tests.support.api import Api


async def key_id(api: Api, scope: str) -> str:
    services: Services = api.app.state.services
    principal = await services.auth.authenticate(api.keys[scope])
    assert principal is not None
    return principal.key_id


def order(order_id: str, n_lines: int) -> dict[str, object]:
    return {"order_id": order_id, "lines": [{"sku": f"S{i}", "qty": 1} for i in range(n_lines)]}


@pytest.fixture
async def stocked(api: Api) -> Api:
    for i in range(100):
        await api.engine.inbound(ref="po", sku=f"S{i}", location="north", qty=10)
    return api


async def test_a_key_over_its_lines_in_flight_gets_429_and_nothing_is_locked(
    stocked: Api,
) -> None:
    services: Services = stocked.app.state.services
    limit = services.settings.max_lines_in_flight_per_key
    checkout = await key_id(stocked, "checkout")

    with services.lines_in_flight.hold(checkout, limit - 50, limit):  # orders in flight
        refused = await stocked.client.post(
            "/v1/reservations", json=order("big", 51), headers=stocked.auth("checkout")
        )
        fits = await stocked.client.post(
            "/v1/reservations", json=order("fits", 50), headers=stocked.auth("checkout")
        )
        other_key = await stocked.client.post(
            "/v1/reservations", json=order("other", 100), headers=stocked.auth("admin")
        )

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "rate_limited"
    assert (fits.status_code, other_key.status_code) == (201, 201)
    assert (
        await stocked.client.get("/v1/reservations/big", headers=stocked.auth("checkout"))
    ).status_code == 404
    assert (await stocked.engine.stock("S60")).locations["north"].locked == 1  # "other" only
    assert services.lines_in_flight.of(checkout) == 0
    again = await stocked.client.post(
        "/v1/reservations", json=order("big", 51), headers=stocked.auth("checkout")
    )
    assert again.status_code == 201


async def test_one_line_orders_are_never_refused_nor_counted_by_the_lines_limit(
    stocked: Api,
) -> None:
    # A storefront sends every customer's checkout with one key: a flash sale's burst of
    # one-line orders is the request rate limit's business, not this one's.
    services: Services = stocked.app.state.services
    limit = services.settings.max_lines_in_flight_per_key
    checkout = await key_id(stocked, "checkout")

    with services.lines_in_flight.hold(checkout, limit, limit):
        one = await stocked.client.post(
            "/v1/reservations", json=order("one", 1), headers=stocked.auth("checkout")
        )
        held = services.lines_in_flight.of(checkout)

    assert one.status_code == 201
    assert held == limit


async def test_an_order_larger_than_the_limit_is_admitted_when_its_key_has_none_in_flight(
    api: Api,
) -> None:
    services: Services = api.app.state.services
    for i in range(100):
        await api.engine.inbound(ref="po", sku=f"S{i}", location="north", qty=1)
    services.settings.max_lines_in_flight_per_key = 10

    res = await api.client.post(
        "/v1/reservations", json=order("big", 100), headers=api.auth("checkout")
    )

    assert res.status_code == 201


async def test_ship_or_cancel_of_an_order_still_being_reserved_is_409_pending(api: Api) -> None:
    engine = api.engine
    await engine.inbound(ref="po", sku="S0", location="north", qty=5)
    # An attempt has opened the order's index and not yet placed its part.
    body = {"groups": {str(engine.keys.group_of("S0")): ["S0"]}}
    h = engine.keys.group_of("o1")
    now = engine.now()
    await engine.run(
        sc.index_open(
            ready=engine.keys.ready(h),
            index=engine.keys.order_index("o1"),
            fingerprint="fp",
            token="attempt-1",
            now=now,
            expires_at=now + 60_000,
            body=orjson.dumps(body),
            retention_ms=60_000,
            stale_token="",
        )
    )

    for action, scope in (("ship", "warehouse"), ("cancel", "checkout")):
        res = await api.client.post(f"/v1/reservations/o1/{action}", headers=api.auth(scope))
        assert res.status_code == 409
        problem = res.json()
        assert (problem["code"], problem["reservation_status"]) == ("invalid_state", "pending")
    assert (await engine.stock("S0")).locations["north"].locked == 0
    index = await engine.client.hget(engine.keys.order_index("o1"), "st")
    assert index == b"active"
