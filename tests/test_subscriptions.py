"""Back in stock: a subscriber to a sold-out SKU hears exactly once when it is available."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache.engine import StockEngine
from inventory_cache.errors import ValidationError
from inventory_cache.models import LineRequest
from inventory_cache.subscriptions import BackInStock, create_subscription
from inventory_cache.webhooks import WebhookSender
from persistence.db import make_engine, session_factory
from persistence.models import Subscription
from tests.support.clock import ManualClock
from tests.support.doubles import Receiver
from tests.support.services import make_settings


@pytest.fixture
def sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    db = make_engine(pg_url)
    yield session_factory(db)
    db.dispose()


@pytest.fixture
async def engine(real_redis: Any, prefix: str, clock: ManualClock) -> StockEngine:
    eng = StockEngine(real_redis, make_settings(prefix), clock=clock)
    await eng.mark_ready()
    return eng


def subscribe(sessions: sessionmaker[Session], **kw: Any) -> str:
    """A subscription; a webhook of a loopback receiver is allowed (its `http://host:port`)."""
    url = urlsplit(kw.get("webhook_url") or "")
    allowed = [f"http://{url.netloc}"] if url.hostname == "127.0.0.1" else []
    with sessions() as s:
        sub, _ = create_subscription(s, allowed_hosts=allowed, **kw)
        return sub.public_id


async def test_subscriber_to_a_sold_out_sku_is_notified_exactly_once(
    engine: StockEngine, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    await engine.inbound(ref="in-1", sku="B", location="north", qty=1)
    await engine.reserve(order_id="o1", lines=[LineRequest("B", 1)])  # sold out
    hook = subscribe(sessions, sku="B", webhook_url=f"{receiver.url}/bis")
    shop = subscribe(sessions, sku="B", subscriber_id="customer-42")
    other = subscribe(sessions, sku="C", webhook_url=f"{receiver.url}/bis")
    sender = WebhookSender(allowed_hosts=[receiver.url], secret="k", backoff_s=0.01)
    # Two schedulers ticking at the same time must not notify anyone twice.
    first = BackInStock(engine, sessions, sender=sender, notify_url=f"{receiver.url}/shop")
    second = BackInStock(engine, sessions, sender=sender, notify_url=f"{receiver.url}/shop")

    assert await first.tick() == []  # still sold out
    await engine.inbound(ref="in-2", sku="B", location="north", qty=3)
    a, b = await asyncio.gather(first.tick(), second.tick())
    await engine.reserve(order_id="o2", lines=[LineRequest("B", 3)])  # sold out again...
    await engine.inbound(ref="in-3", sku="B", location="south", qty=2)  # ...and back
    later = await first.tick()

    notified = sorted(n.subscription_id for n in a + b)
    assert notified == sorted([hook, shop])
    assert all(n.delivered and n.available == 3 for n in a + b)
    assert later == []
    calls = sorted((c["path"], c["headers"]["X-Inventory-Delivery"]) for c in receiver.calls)
    assert calls == sorted([("/bis", f"bis-{hook}"), ("/shop", f"bis-{shop}")])
    shop_call = next(b for b in receiver.bodies() if b["subscription_id"] == shop)
    assert shop_call == {
        "event": "back_in_stock",
        "delivery_id": f"bis-{shop}",
        "subscription_id": shop,
        "sku": "B",
        "available": 3,
        "subscriber_id": "customer-42",
    }
    with sessions() as s:
        pending = s.scalars(
            select(Subscription.public_id).where(Subscription.notified_at.is_(None))
        )
        assert list(pending) == [other]


def test_the_same_pending_subscription_twice_is_one(sessions: sessionmaker[Session]) -> None:
    first = subscribe(sessions, sku="B", subscriber_id="customer-42")
    again = subscribe(sessions, sku="B", subscriber_id="customer-42")
    different = subscribe(sessions, sku="B", subscriber_id="customer-43")

    assert first == again != different


BAD = [
    ({"sku": "B"}, "sku"),
    ({"sku": "B", "webhook_url": "http://127.0.0.1/x", "subscriber_id": "c"}, "sku"),
    ({"sku": "B", "webhook_url": "http://10.0.0.1/admin"}, "webhook_url"),
    ({"sku": "B b", "subscriber_id": "c"}, "sku"),
    ({"sku": "B", "subscriber_id": "c d"}, "subscriber_id"),
]


def test_bad_subscriptions_are_refused_and_stored_nowhere(
    sessions: sessionmaker[Session],
) -> None:
    for kw, field in BAD:
        with pytest.raises(ValidationError) as exc:
            subscribe(sessions, **kw)
        assert exc.value.extra["field"] == field, kw

    with sessions() as s:
        assert list(s.scalars(select(Subscription))) == []


class _Exploding(WebhookSender):
    async def send(self, url: str, event: str, payload: dict[str, Any], delivery_id: str) -> bool:
        raise RuntimeError("the HTTP client blew up")


async def test_a_failed_delivery_neither_crashes_the_tick_nor_marks_it_notified(
    engine: StockEngine, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = subscribe(sessions, sku="B", webhook_url=f"{receiver.url}/bis")
    await engine.inbound(ref="in-1", sku="B", location="north", qty=1)
    broken = BackInStock(
        engine, sessions, sender=_Exploding(allowed_hosts=[receiver.url], secret="k")
    )
    receiver.statuses = [400]  # the receiver refuses the first call
    refused = BackInStock(
        engine, sessions, sender=WebhookSender(allowed_hosts=[receiver.url], secret="k", attempts=1)
    )

    (crashed,) = await broken.tick()
    (first,) = await refused.tick()
    (second,) = await refused.tick()

    assert (crashed.subscription_id, crashed.delivered) == (hook, False)
    assert (first.delivered, second.delivered) == (False, True)
    with sessions() as s:
        sub = s.scalars(select(Subscription).where(Subscription.sku == "B")).one()
        assert sub.notified_at is not None
    assert await refused.tick() == []
