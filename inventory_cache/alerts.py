"""Stock alerts: raised once when a level crosses its threshold, cleared when it recovers.

Three kinds per (sku, location): `low_stock` when available <= the policy's reorder_point
(only where a policy exists), `oversold` when locked > on_hand (physical truth drove
on_hand below what was promised; docs/contract.md), `uncovered` while pre-orders there have
lost their incoming stock (it was cancelled or came short: those orders cannot ship
until someone cancels them or finds the stock). The pre-order book is read for the
(sku, location)s of events that carry pre-order lines (`pre`); other events leave that
kind as it was. An alert is a row of `alerts`: `active` while
the condition holds, `cleared_at` set when it stops. At most one active row per
(sku, location, kind) (a partial unique index), so a condition that holds across many
changes is one alert, and each new crossing is a new row.

Why follow the event streams instead of polling levels: every change's row carries the
levels after it, so each crossing is seen even when the level goes down and back up
between two ticks. The monitor keeps, per slot group, the id of the last event it
evaluated (`Keys.alerts_cursor`), written after the alerts are committed; a crash in
between re-reads some events, which is harmless because evaluation compares with the
active alerts. When there is no cursor yet, or the stream was trimmed past it (the
worker keeps the last hour, so only after the monitor was down that long), the group is
re-evaluated from its current levels instead: a crossing inside the gap may be missed,
the state never is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache.engine import StockEngine, parse_stock
from inventory_cache.incoming import BOOK_STATES
from inventory_cache.webhooks import WebhookSender
from persistence.events import StreamId, available, read_rows
from persistence.models import Alert, Policy

log = logging.getLogger(__name__)

AlertKind = Literal["low_stock", "oversold", "uncovered"]
KINDS: tuple[AlertKind, ...] = ("low_stock", "oversold", "uncovered")
PAGE = 1000
MAX_PAGES = 20  # per group and tick; the rest waits for the next tick
CHUNK = 500  # keys per SQL IN list


@dataclass(frozen=True, slots=True)
class Observation:
    """The levels of one (sku, location) right after a change at `at_ms`."""

    sku: str
    location: str
    on_hand: int
    locked: int
    safety_stock: int
    at_ms: int
    # The uncovered pre-orders there ({"orders": [...], "units": n}); None: not read, so
    # the `uncovered` kind stays as it is.
    uncovered: dict[str, Any] | None = None

    @property
    def available(self) -> int:
        return available(self.on_hand, self.locked, self.safety_stock)


@dataclass(frozen=True, slots=True)
class AlertChange:
    change: Literal["raised", "cleared"]
    alert_id: int
    sku: str
    location: str
    kind: AlertKind
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def as_payload(self) -> dict[str, Any]:
        return {
            "alert": {
                "id": self.alert_id,
                "state": self.change,
                "sku": self.sku,
                "location": self.location,
                "kind": self.kind,
                "at": self.at.isoformat(),
                "details": self.details,
            }
        }


def conditions(obs: Observation, reorder_point: int | None) -> dict[AlertKind, dict[str, Any]]:
    """The conditions that hold for `obs`, each with the figures that make it hold."""
    out: dict[AlertKind, dict[str, Any]] = {}
    if reorder_point is not None and obs.available <= reorder_point:
        out["low_stock"] = {"available": obs.available, "reorder_point": reorder_point}
    if obs.locked > obs.on_hand:
        out["oversold"] = {
            "on_hand": obs.on_hand,
            "locked": obs.locked,
            "shortfall": obs.locked - obs.on_hand,
        }
    if obs.uncovered is not None and obs.uncovered["units"] > 0:
        out["uncovered"] = obs.uncovered
    return out


def uncovered_by_location(book: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """The uncovered pre-order lines of a SKU's book (`Keys.preorders`), by location,
    orders in the order they were taken."""
    out: dict[str, dict[str, Any]] = {}
    entries = sorted((int(f), raw) for f, raw in book.items() if f != b"#")
    for _, raw in entries:
        order, _token, loc, qty, _exp, state = orjson.loads(raw)
        if BOOK_STATES[state] == "uncovered":
            seen = out.setdefault(loc, {"orders": [], "units": 0})
            if order not in seen["orders"]:
                seen["orders"].append(order)
            seen["units"] += int(qty)
    return out


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def apply_observations(session: Session, observations: Sequence[Observation]) -> list[AlertChange]:
    """Walk the observations in order and record each crossing; commits.

    Two evaluators (the scheduler, and the API after a policy change) may raise the same
    alert at once. The second insert waits on the first's unique entry and fails once it
    is committed; the second pass then reads that alert and agrees with it.

    Returns:
        The alerts raised and cleared, in the order they happened.
    """
    try:
        return _apply_observations(session, observations)
    except IntegrityError:
        session.rollback()
        return _apply_observations(session, observations)


def _apply_observations(session: Session, observations: Sequence[Observation]) -> list[AlertChange]:
    keys = sorted({(o.sku, o.location) for o in observations})
    reorder: dict[tuple[str, str], int] = {}
    state: dict[tuple[str, str, str], Alert | None] = {}
    for chunk in _chunks(keys):
        # Locked: two evaluations of one pair (two policy PUTs, a PUT and a tick) take
        # turns, so the second sees the alert the first raised instead of raising it again.
        for p in session.scalars(
            select(Policy)
            .where(tuple_(Policy.sku, Policy.location).in_(chunk))
            .order_by(Policy.sku, Policy.location)
            .with_for_update()
        ):
            reorder[(p.sku, p.location)] = p.reorder_point
        for a in session.scalars(
            select(Alert)
            .where(tuple_(Alert.sku, Alert.location).in_(chunk), Alert.active)
            .with_for_update()
        ):
            state[(a.sku, a.location, a.kind)] = a
    changes: list[tuple[str, Alert]] = []
    for obs in observations:
        at = datetime.fromtimestamp(obs.at_ms / 1000, UTC)
        holding = conditions(obs, reorder.get((obs.sku, obs.location)))
        for kind in KINDS:
            if kind == "uncovered" and obs.uncovered is None:
                continue
            key = (obs.sku, obs.location, kind)
            current = state.get(key)
            if kind in holding and current is None:
                alert = Alert(
                    sku=obs.sku,
                    location=obs.location,
                    kind=kind,
                    active=True,
                    raised_at=at,
                    details=holding[kind],
                )
                session.add(alert)
                session.flush()
                state[key] = alert
                changes.append(("raised", alert))
            elif kind not in holding and current is not None:
                current.active = False
                current.cleared_at = at
                session.flush()  # before a new active row of the same key is inserted
                state[key] = None
                changes.append(("cleared", current))
    session.commit()
    return [
        AlertChange(
            change,  # type: ignore[arg-type]
            a.id,
            a.sku,
            a.location,
            a.kind,  # type: ignore[arg-type]
            a.raised_at if change == "raised" else (a.cleared_at or a.raised_at),
            dict(a.details or {}),
        )
        for change, a in changes
    ]


def list_alerts(
    session: Session,
    *,
    active_only: bool = True,
    sku: str | None = None,
    location: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Newest first; what `GET /v1/alerts` answers."""
    q = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if active_only:
        q = q.where(Alert.active)
    if sku is not None:
        q = q.where(Alert.sku == sku)
    if location is not None:
        q = q.where(Alert.location == location)
    if kind is not None:
        q = q.where(Alert.kind == kind)
    return list(session.scalars(q))


class AlertMonitor:
    """Follows the event streams and turns crossings into alerts (and webhooks)."""

    def __init__(
        self,
        engine: StockEngine,
        sessions: sessionmaker[Session],
        *,
        sender: WebhookSender | None = None,
        webhook_url: str | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.sender = sender
        self.webhook_url = webhook_url

    def cursor_key(self, g: int) -> str:
        return self.engine.keys.alerts_cursor(g)

    async def tick(self) -> list[AlertChange]:
        """Evaluate every change since the last tick; returns the alerts raised and cleared."""
        eng = self.engine
        groups = list(eng.keys.all_groups())
        cmds: list[Any] = []
        for g in groups:
            cmds.append((None, ("GET", self.cursor_key(g))))
            cmds.append((None, ("XRANGE", eng.keys.events(g), "-", "+", "COUNT", 1)))
            cmds.append((None, ("XREVRANGE", eng.keys.events(g), "+", "-", "COUNT", 1)))
        replies = await eng.batcher.many(cmds)
        for r in replies:
            if isinstance(r, BaseException):
                raise r
        follow: dict[int, str] = {}
        resync: dict[int, str] = {}
        for i, g in enumerate(groups):
            cursor, first, last = replies[3 * i : 3 * i + 3]
            head = last[0][0].decode() if last else "0-0"
            if cursor is None:
                resync[g] = head
            elif (
                first and StreamId.parse(first[0][0]) > StreamId.parse(cursor) and cursor != b"0-0"
            ):
                resync[g] = head  # trimmed past our cursor: entries may be lost
            elif last and StreamId.parse(last[0][0]) > StreamId.parse(cursor):
                follow[g] = cursor.decode()
        observations = await self._current_levels(resync) if resync else []
        positions = dict(resync)
        for g, cursor in follow.items():
            obs, positions[g] = await self._read_stream(g, cursor)
            observations.extend(obs)
        changes: list[AlertChange] = []
        if observations:
            changes = await asyncio.to_thread(self._apply, observations)
        if positions:
            await eng.batcher.many(
                [(None, ("SET", self.cursor_key(g), pos)) for g, pos in positions.items()]
            )
        await self.notify(changes)
        return changes

    async def evaluate(self, observations: Sequence[Observation]) -> list[AlertChange]:
        """Evaluate given levels now (a policy changed its reorder point, say)."""
        changes = await asyncio.to_thread(self._apply, observations)
        await self.notify(changes)
        return changes

    def _apply(self, observations: Sequence[Observation]) -> list[AlertChange]:
        with self.sessions() as session:
            return apply_observations(session, observations)

    async def notify(self, changes: Sequence[AlertChange]) -> None:
        if self.sender is None or not self.webhook_url or not changes:
            return
        url = self.webhook_url
        sender = self.sender
        await asyncio.gather(
            *(
                sender.send(
                    url, f"alert.{c.change}", c.as_payload(), f"alert-{c.alert_id}-{c.change}"
                )
                for c in changes
            )
        )

    async def _read_stream(self, g: int, cursor: str) -> tuple[list[Observation], str]:
        out: list[Observation] = []
        touched: dict[tuple[str, str], Observation] = {}
        position = cursor
        for _ in range(MAX_PAGES):
            page = await self.engine.client.xrange(
                self.engine.keys.events(g), f"({position}", "+", count=PAGE
            )
            for raw_id, fields in page:
                position = raw_id.decode()
                ts = int(fields.get(b"ts", b"0"))
                for row in read_rows(fields.get(b"rows")):
                    out.append(
                        Observation(
                            row.sku, row.location, row.on_hand, row.locked, row.safety_stock, ts
                        )
                    )
                    if b"pre" in fields:
                        touched[(row.sku, row.location)] = out[-1]
            if len(page) < PAGE:
                break
        return out + await self._with_uncovered(touched), position

    async def _with_uncovered(
        self, touched: dict[tuple[str, str], Observation]
    ) -> list[Observation]:
        """The last observation of each (sku, location) an event with pre-order lines
        touched, again, with the uncovered pre-orders its SKU's book holds now."""
        if not touched:
            return []
        skus = sorted({sku for sku, _ in touched})
        books = await self.engine.batcher.many(
            [(None, ("HGETALL", self.engine.keys.preorders(s))) for s in skus]
        )
        uncovered: dict[str, dict[str, dict[str, Any]]] = {}
        for sku, book in zip(skus, books, strict=True):
            if isinstance(book, BaseException):
                raise book
            uncovered[sku] = uncovered_by_location(book)
        nothing = {"orders": [], "units": 0}
        return [
            replace(obs, uncovered=uncovered[sku].get(loc, nothing))
            for (sku, loc), obs in sorted(touched.items())
        ]

    async def _current_levels(self, groups: dict[int, str]) -> list[Observation]:
        """The levels of every SKU in `groups` now: one SCAN pass, HGETALLs pipelined."""
        eng = self.engine
        skus = []
        async for raw in eng.client.scan_iter(match=eng.keys.scan_pattern("s"), count=1000):
            sku = eng.keys.stock_sku(raw)
            if sku is not None and eng.keys.group_of(sku) in groups:
                skus.append(sku)
        now = eng.now()
        out: list[Observation] = []
        nothing = {"orders": [], "units": 0}
        for i in range(0, len(skus), CHUNK):
            chunk = skus[i : i + CHUNK]
            cmds: list[Any] = []
            for s in chunk:
                cmds.append((None, ("HGETALL", eng.keys.stock(s))))
                cmds.append((None, ("HGETALL", eng.keys.preorders(s))))
            raws = await eng.batcher.many(cmds)
            for j, sku in enumerate(chunk):
                raw, book = raws[2 * j], raws[2 * j + 1]
                for r in (raw, book):
                    if isinstance(r, BaseException):
                        raise r
                uncovered = uncovered_by_location(book)
                for loc, lv in parse_stock(sku, raw).items():
                    out.append(
                        Observation(
                            sku,
                            loc,
                            lv.on_hand,
                            lv.locked,
                            lv.safety_stock,
                            now,
                            uncovered.get(loc, nothing),
                        )
                    )
        return out
