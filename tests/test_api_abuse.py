"""Hostile input: each defect an adversarial review found, kept fixed.

Identifiers are matched whole, bodies must be UTF-8 JSON, Redis keys of different
(kind, sku, ref) never meet, a line with a location is served before one without, and a
409 about a reservation's state says which state in `reservation_status`.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import orjson
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache.apikeys import create_key
from inventory_cache.errors import ValidationError
from inventory_cache.feed import FeedEvent
from inventory_cache.subscriptions import BackInStock
from inventory_cache.verify import Difference, compare
from persistence.models import Policy
from tests.support.api import Api, assert_problem
from tests.support.services import REDIS_URL

JSON = {"content-type": "application/json"}


async def stock(api: Api, sku: str) -> dict[str, Any]:
    r = await api.client.get(f"/v1/stock/{sku}", headers=api.auth("read"))
    assert r.status_code == 200, r.text
    locations: dict[str, Any] = r.json()["locations"]
    return locations


async def inbound(api: Api, ref: str, sku: str, location: str, qty: int) -> None:
    body = {"ref": ref, "sku": sku, "location": location, "qty": qty}
    r = await api.client.post("/v1/inbound", json=body, headers=api.auth("warehouse"))
    assert r.status_code == 200, r.text


async def test_an_identifier_with_a_trailing_newline_is_422_and_applies_nothing(api: Api) -> None:
    await inbound(api, "in-1", "phone-a", "north", 10)
    batch = {
        "location": "north",
        "events": [
            {"event_id": "e1\n", "type": "sale", "sku": "phone-a", "qty": 1},
            {"event_id": "e2", "type": "sale", "sku": "phone-a\n", "qty": 1},
        ],
    }

    r = await api.client.post("/v1/pos/events", json=batch, headers=api.auth("warehouse"))

    assert r.status_code == 200, r.text
    assert [x["code"] for x in r.json()["results"]] == ["validation_error"] * 2
    assert (await stock(api, "phone-a"))["north"]["on_hand"] == 10
    assert await api.engine.client.exists(api.engine.keys.stock("phone-a\n")) == 0
    with pytest.raises(ValidationError, match="ref must be"):
        await api.engine.inbound(ref="r\n", sku="phone-a", location="north", qty=1)


async def test_a_lone_surrogate_anywhere_in_a_body_is_422_before_any_change(api: Api) -> None:
    await inbound(api, "in-1", "phone-a", "north", 10)
    raw = (
        b'{"location": "north", "events": ['
        b'{"event_id": "ok-1", "type": "return", "sku": "phone-a", "qty": 5},'
        b'{"event_id": "\\ud800", "type": "sale", "sku": "phone-a", "qty": 1}]}'
    )

    first = await api.client.post(
        "/v1/pos/events", content=raw, headers={**api.auth("warehouse"), **JSON}
    )
    retry = await api.client.post(
        "/v1/pos/events", content=raw, headers={**api.auth("warehouse"), **JSON}
    )

    assert assert_problem(first, 422, "validation_error")["field"] == "body"
    assert_problem(retry, 422, "validation_error")
    assert (await stock(api, "phone-a"))["north"]["on_hand"] == 10


def same_group_pair(api: Api) -> tuple[str, str]:
    """`s` and `s:x` whose stock shares a slot group (so their op keys share a slot)."""
    keys = api.engine.keys
    for i in range(10_000):
        sku = f"col{i}"
        if keys.group_of(sku) == keys.group_of(sku + ":x"):
            return sku, sku + ":x"
    raise AssertionError("no pair found")


async def test_op_keys_of_different_sku_and_ref_never_meet(api: Api) -> None:
    short, long = same_group_pair(api)

    await inbound(api, "x:r1", short, "north", 3)
    await inbound(api, "r1", long, "north", 4)
    ret = {"ref": "x:r2", "sku": short, "location": "north", "qty": 1, "restock": True}
    r = await api.client.post("/v1/returns", json=ret, headers=api.auth("warehouse"))
    assert r.status_code == 200, r.text
    sale = {
        "location": "north",
        "events": [{"event_id": "r2", "type": "sale", "sku": long, "qty": 1}],
    }
    pos = await api.client.post("/v1/pos/events", json=sale, headers=api.auth("warehouse"))

    assert pos.json()["results"][0]["status"] == "applied", pos.text
    assert (await stock(api, short))["north"]["on_hand"] == 4
    assert (await stock(api, long))["north"]["on_hand"] == 3
    assert api.engine.keys.op("inbound", short, "x:r1") != api.engine.keys.op("inbound", long, "r1")


async def test_movements_before_beyond_bigint_is_422(api: Api) -> None:
    r = await api.client.get(
        "/v1/movements", params={"before": str(2**63)}, headers=api.auth("read")
    )

    assert assert_problem(r, 422, "validation_error")["field"] == "before"


async def test_a_409_about_a_reservations_state_names_it_in_reservation_status(
    api: Api,
) -> None:
    await inbound(api, "in-1", "phone-a", "north", 10)
    order = {"order_id": "o-1", "lines": [{"sku": "phone-a", "qty": 1}]}
    assert (
        await api.client.post("/v1/reservations", json=order, headers=api.auth("checkout"))
    ).status_code == 201
    await api.client.post("/v1/reservations/o-1/cancel", headers=api.auth("checkout"))

    r = await api.client.post("/v1/reservations/o-1/ship", headers=api.auth("warehouse"))

    body = assert_problem(r, 409, "invalid_state")
    assert body["status"] == 409
    assert body["reservation_status"] == "cancelled"


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"ref": "b1", "sku": "A", "location": "north", "qty": 1}',
        '{"ref": "b1", "sku": "A", "location": "north", "qty": 1}'.encode("utf-16"),
        '{"ref": "b1", "sku": "A", "location": "north", "qty": 1}'.encode("utf-16-le"),
        b'{"ref": "b1", "sku": "A\xff", "location": "north", "qty": 1}',
    ],
    ids=["bom", "utf16-bom", "utf16-le", "bad-utf8"],
)
@pytest.mark.parametrize("path", ["/v1/inbound", "/v1/reservations"])
async def test_a_body_that_is_not_plain_utf8_is_422_on_every_route(
    api: Api, raw: bytes, path: str
) -> None:
    scope = "checkout" if path == "/v1/reservations" else "warehouse"

    r = await api.client.post(path, content=raw, headers={**api.auth(scope), **JSON})

    assert assert_problem(r, 422, "validation_error")["field"] == "body"
    assert await api.engine.client.exists(api.engine.keys.stock("A")) == 0


async def test_a_compressed_body_is_415(api: Api) -> None:
    raw = gzip.compress(orjson.dumps({"ref": "g1", "sku": "A", "location": "north", "qty": 1}))

    r = await api.client.post(
        "/v1/inbound",
        content=raw,
        headers={**api.auth("warehouse"), **JSON, "content-encoding": "gzip"},
    )

    assert_problem(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", ["/v1/inbound", "/v1/reservations", "/v1/pos/events"])
async def test_no_key_is_401_even_with_a_broken_body(api: Api, path: str) -> None:
    r = await api.client.post(path, content=b'{"ref": ', headers=JSON)

    assert_problem(r, 401, "unauthorized")


def test_the_feed_shows_an_operation_without_its_internal_attempt_token() -> None:
    raw = {
        b"t": b"reserve",
        b"op": b"reserve:order-7:9f2c01ab33e40",
        b"ts": b"1",
        b"ref": b"order-7",
        b"reason": b"reserve",
        b"rows": b"[]",
        b"order": b"order-7",
    }

    event = FeedEvent.from_entry(3, b"1-0", raw)

    assert event.body["op"] == "reserve:order-7"


async def policy_pair(api: Api, sku: str, location: str) -> tuple[int | None, int]:
    """(PostgreSQL's policy safety_stock or None, Redis's safety_stock)."""
    with Session(api.db) as s:
        p = s.get(Policy, (sku, location))
        ours = None if p is None else p.safety_stock
    raw = await api.engine.client.hget(api.engine.keys.stock(sku), f"s:{location}")
    return ours, int(raw or 0)


async def test_concurrent_policy_puts_never_500_and_leave_postgres_equal_to_redis(
    api: Api,
) -> None:
    admin = api.auth("admin")
    for trial in range(10):
        sku = f"pol-{trial}"
        values = [1, 2, 3, 4] if trial % 2 else [5, 5]

        answers = await asyncio.gather(
            *(
                api.client.put(f"/v1/policies/{sku}/north", json={"safety_stock": v}, headers=admin)
                for v in values
            )
        )

        assert [r.status_code for r in answers] == [200] * len(values), [r.text for r in answers]
        pg, redis = await policy_pair(api, sku, "north")
        assert pg == redis and pg in values


async def test_verify_notices_a_policy_that_redis_does_not_hold(api: Api) -> None:
    r = await api.client.put(
        "/v1/policies/pol-x/north", json={"safety_stock": 3}, headers=api.auth("admin")
    )
    assert r.status_code == 200
    await api.engine.client.hset(api.engine.keys.stock("pol-x"), "s:north", 1)
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        diffs = compare(sync, api.db, api.engine.settings)
    finally:
        sync.close()

    assert Difference("policy", "pol-x@north", 1, 3) in diffs


def another_checkout_key(api: Api) -> dict[str, str]:
    key, _ = create_key(api.db, name="other shop", scopes=["checkout"])
    return {"Authorization": f"Bearer {key}"}


async def test_identical_subscriptions_at_once_are_one_notified_once(api: Api) -> None:
    api.app.state.services.settings.webhook_allowed_hosts = ["hooks.example.com"]
    co = api.auth("checkout")
    bodies = [
        {"sku": "sub-race", "subscriber_id": "customer-1"},
        {"sku": "sub-race", "webhook_url": "https://hooks.example.com/bis"},
    ]

    answers = await asyncio.gather(
        *(api.client.post("/v1/subscriptions", json=b, headers=co) for b in bodies * 3)
    )

    assert sorted(r.status_code for r in answers) == [200] * 4 + [201] * 2, [
        r.text for r in answers
    ]
    assert len({r.json()["id"] for r in answers}) == 2
    await api.engine.inbound(ref="in", sku="sub-race", location="north", qty=1)
    notified = await BackInStock(api.engine, sessionmaker(api.db, expire_on_commit=False)).tick()
    assert len(notified) == 2


async def test_subscription_ids_are_not_guessable(api: Api) -> None:
    co = api.auth("checkout")
    ids = [
        (
            await api.client.post(
                "/v1/subscriptions", json={"sku": "sub-id", "subscriber_id": f"c{i}"}, headers=co
            )
        ).json()["id"]
        for i in range(3)
    ]

    assert all(isinstance(i, str) and len(i) >= 20 for i in ids)
    assert len(set(ids)) == 3


async def test_a_subscription_belongs_to_the_key_that_made_it(api: Api) -> None:
    co, other = api.auth("checkout"), another_checkout_key(api)
    made = await api.client.post(
        "/v1/subscriptions", json={"sku": "sub-own", "subscriber_id": "customer-9"}, headers=co
    )
    sub_id = made.json()["id"]

    mine = await api.client.get(f"/v1/subscriptions/{sub_id}", headers=co)
    theirs = await api.client.get(f"/v1/subscriptions/{sub_id}", headers=other)
    admin = await api.client.get(f"/v1/subscriptions/{sub_id}", headers=api.auth("admin"))
    again_by_other = await api.client.post(
        "/v1/subscriptions", json={"sku": "sub-own", "subscriber_id": "customer-9"}, headers=other
    )

    assert mine.status_code == 200 and admin.status_code == 200
    assert_problem(theirs, 404, "not_found")
    assert again_by_other.status_code == 201 and again_by_other.json()["id"] != sub_id


async def test_a_reservation_belongs_to_the_key_that_made_it(api: Api) -> None:
    await inbound(api, "in-1", "phone-a", "north", 10)
    co, other = api.auth("checkout"), another_checkout_key(api)
    order = {"order_id": "o-own", "lines": [{"sku": "phone-a", "qty": 2}]}
    assert (await api.client.post("/v1/reservations", json=order, headers=co)).status_code == 201

    read = await api.client.get("/v1/reservations/o-own", headers=other)
    cancel = await api.client.post("/v1/reservations/o-own/cancel", headers=other)
    retry = await api.client.post("/v1/reservations", json=order, headers=other)
    admin_read = await api.client.get("/v1/reservations/o-own", headers=api.auth("admin"))
    mine = await api.client.get("/v1/reservations/o-own", headers=co)

    assert_problem(read, 404, "not_found")
    assert_problem(cancel, 404, "not_found")
    assert retry.status_code == 409, retry.text  # the order id is taken; nothing replayed
    assert "lines" not in retry.json() or retry.json()["code"] != "insufficient_stock"
    assert admin_read.status_code == 200 and mine.json()["status"] == "active"
    assert (await stock(api, "phone-a"))["north"]["locked"] == 2
    shipped = await api.client.post("/v1/reservations/o-own/ship", headers=api.auth("warehouse"))
    assert shipped.status_code == 200
    admin_cancel = await api.client.post("/v1/reservations/o-own/cancel", headers=api.auth("admin"))
    assert_problem(admin_cancel, 409, "invalid_state")
