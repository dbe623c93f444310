"""Back in stock: "notify me when available" on a sold-out product page, notified once.

A subscription names a SKU and either a `webhook_url` (called directly; its host must be
on the allowlist) or a `subscriber_id` that the shop passes on (delivered to the shop's
own `INVENTORY_NOTIFY_WEBHOOK_URL`, which resolves the id to a customer). It is pending
while `notified_at` is empty.

Each tick looks up the availability of the SKUs with pending subscriptions and, for those
available again, claims their subscriptions in one `UPDATE ... WHERE notified_at IS NULL
RETURNING` before sending anything: of two schedulers (or a retried tick) only one claims
a row, so nobody is notified twice. A claimed subscription is then delivered with the
webhook sender's retries; one that is not delivered (receiver down through all of them,
a refusal, an error of any kind) is released, pending again, and tried at a later tick
while its SKU is available: a failure never passes for a notification, nor stops the
tick.

A subscription made while its SKU is in stock (the page was stale) is notified at the
next tick: the subscriber asked to hear when they can buy it, and they can.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache import validation as v
from inventory_cache.engine import StockEngine
from inventory_cache.errors import ValidationError
from inventory_cache.webhooks import WebhookSender, check_url
from persistence.models import Subscription

log = logging.getLogger(__name__)

MAX_SKUS_PER_TICK = 10_000


@dataclass(frozen=True, slots=True)
class Notification:
    subscription_id: str  # the public id
    sku: str
    available: int
    webhook_url: str | None
    subscriber_id: str | None
    delivered: bool


def create_subscription(
    session: Session,
    *,
    sku: str,
    webhook_url: str | None = None,
    subscriber_id: str | None = None,
    allowed_hosts: Sequence[str] = (),
    owner: str | None = None,
) -> tuple[Subscription, bool]:
    """Store a subscription; the same pending (owner, sku, target) again returns the first.

    Concurrent identical requests make one row: the insert yields to the pending row of
    the same `dedup_key` (a unique index), which is then returned to every caller.

    Returns:
        The subscription and whether it was created by this call.
    Raises:
        ValidationError: a bad SKU, not exactly one target, or a host off the allowlist.
    """
    v.ident(sku, "sku")
    if (webhook_url is None) == (subscriber_id is None):
        raise ValidationError("give exactly one of webhook_url and subscriber_id", field="sku")
    if webhook_url is not None:
        check_url(webhook_url, allowed_hosts)
    if subscriber_id is not None:
        v.ident(subscriber_id, "subscriber_id")
    dedup = hashlib.sha256(orjson.dumps([owner, sku, webhook_url, subscriber_id])).hexdigest()
    dialect = session.get_bind().dialect.name
    insert = (sqlite if dialect == "sqlite" else postgresql).insert
    public_id = new_public_id()
    created = session.execute(
        insert(Subscription)
        .values(
            public_id=public_id,
            owner=owner,
            dedup_key=dedup,
            sku=sku,
            webhook_url=webhook_url,
            subscriber_id=subscriber_id,
        )
        .on_conflict_do_nothing(
            index_elements=[Subscription.dedup_key],
            index_where=Subscription.notified_at.is_(None),
        )
        .returning(Subscription.id)
    ).first()
    session.commit()
    sub = session.scalars(
        select(Subscription).where(
            Subscription.dedup_key == dedup, Subscription.notified_at.is_(None)
        )
        if created is None
        else select(Subscription).where(Subscription.id == created[0])
    ).one()
    return sub, created is not None


def new_public_id() -> str:
    """128 random bits: an id one client cannot guess from another's."""
    return "sub-" + secrets.token_hex(16)


def visible_to(sub: Subscription, owner: str | None) -> bool:
    """Whether a caller restricted to `owner` (None: any) may see the subscription."""
    return owner is None or sub.owner == owner


class BackInStock:
    def __init__(
        self,
        engine: StockEngine,
        sessions: sessionmaker[Session],
        *,
        sender: WebhookSender | None = None,
        notify_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.sender = sender
        self.notify_url = notify_url

    def _pending_skus(self) -> list[str]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(Subscription.sku)
                    .where(Subscription.notified_at.is_(None))
                    .distinct()
                    .order_by(Subscription.sku)
                    .limit(MAX_SKUS_PER_TICK)
                )
            )

    def _claim(self, skus: Sequence[str]) -> list[Subscription]:
        with self.sessions() as s:
            rows = list(
                s.scalars(
                    update(Subscription)
                    .where(Subscription.sku.in_(skus), Subscription.notified_at.is_(None))
                    .values(notified_at=datetime.now(UTC))
                    .returning(Subscription)
                )
            )
            s.commit()
            return rows

    async def tick(self) -> list[Notification]:
        """Notify the subscribers of every SKU that is available again; each exactly once."""
        skus = await asyncio.to_thread(self._pending_skus)
        available: dict[str, int] = {}
        for i in range(0, len(skus), 200):
            for a in await self.engine.availability_many(skus[i : i + 200]):
                if a.in_stock:
                    available[a.sku] = a.available
        if not available:
            return []
        claimed = await asyncio.to_thread(self._claim, sorted(available))
        outcomes = await asyncio.gather(
            *(self._deliver(sub, available[sub.sku]) for sub in claimed)
        )
        failed = [sub.id for sub, ok in zip(claimed, outcomes, strict=True) if ok is False]
        if failed:
            await asyncio.to_thread(self._unclaim, failed)
        return [
            Notification(
                sub.public_id,
                sub.sku,
                available[sub.sku],
                sub.webhook_url,
                sub.subscriber_id,
                ok is True,
            )
            for sub, ok in zip(claimed, outcomes, strict=True)
        ]

    def _unclaim(self, ids: Sequence[int]) -> None:
        """Pending again: a later tick tries once more while the SKU is still available.
        Unless the same subscription was made again meanwhile: that one is pending."""
        other = Subscription.__table__.alias("other")
        with self.sessions() as s:
            s.execute(
                update(Subscription)
                .where(
                    Subscription.id.in_(ids),
                    ~exists().where(
                        other.c.dedup_key == Subscription.dedup_key,
                        other.c.notified_at.is_(None),
                    ),
                )
                .values(notified_at=None)
            )
            s.commit()

    async def _deliver(self, sub: Subscription, available: int) -> bool | None:
        """True: delivered; False: not (the claim is undone); None: nothing to call."""
        url = sub.webhook_url or self.notify_url
        if self.sender is None or url is None:
            log.info("subscription %s of %s notified (no webhook to call)", sub.id, sub.sku)
            return None
        payload = {
            "subscription_id": sub.public_id,
            "sku": sub.sku,
            "available": available,
            "subscriber_id": sub.subscriber_id,
        }
        try:
            return await self.sender.send(url, "back_in_stock", payload, f"bis-{sub.public_id}")
        except Exception:
            # One subscription's failure must not stop the others' (nor the scheduler).
            log.exception("subscription %s: delivery failed", sub.id)
            return False
