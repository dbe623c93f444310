"""Incoming stock: units expected at a location on a date, and what product pages and
pre-orders make of them.

An incoming record lives in its SKU's stock hash (`n:<ref>`, see `lua/includes/incomingAt.lua`) so
that availability reads it with the levels; a ref finds its SKU through the ref index
(`Keys.incoming_index`, in the ref's own group). The index is claimed first and never
moved to another SKU, so one ref names one record; an attempt that dies between the two
calls leaves an index without a record, which the next attempt with that ref completes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.errors import InvalidState, NotFound
from inventory_cache.models import Incoming, Level, PreorderChange

if TYPE_CHECKING:
    from inventory_cache.engine.core import EngineCore

# A pre-order line's state in its SKU's book (`Keys.preorders`), as its status reads in
# answers and in the ledger's `preorders`; and back.
BOOK_STATES = {"a": "awaiting", "l": "locked", "u": "uncovered"}
BOOK_STATE_OF = {status: state for state, status in BOOK_STATES.items()}


def utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def available_to_promise(
    raw: Mapping[bytes, bytes], levels: Mapping[str, Level]
) -> tuple[tuple[str, int], ...]:
    """For each UTC date some open incoming stock is due: the units promisable for
    delivery by then, i.e. available now plus the incoming units due by that date that
    no awaiting pre-order holds (pre-orders hold the earliest units, as they are served).
    Empty without open incoming stock."""
    due: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for field, value in raw.items():
        if field.startswith(b"n:"):
            loc, qty, exp = orjson.loads(value)
            due[loc].append((int(exp), field[2:].decode(), int(qty)))
    if not due:
        return ()
    free: dict[str, int] = defaultdict(int)
    for loc, records in due.items():
        held = int(raw.get(f"q:{loc}".encode(), 0))
        for exp, _, qty in sorted(records):
            take = min(held, qty)
            held -= take
            free[utc_date(exp)] += qty - take
    running = sum(lv.available for lv in levels.values())
    out = []
    for day in sorted(free):
        running += free[day]
        out.append((day, running))
    return tuple(out)


def _changes(sku: str, raw: Any) -> list[PreorderChange]:
    if not isinstance(raw, list):  # cjson encodes an empty array as {}
        return []
    return [
        PreorderChange(order, sku, loc, int(qty), int(exp), state)
        for order, _token, _seq, loc, qty, exp, state in raw
    ]


def _incoming(reply: dict[str, Any]) -> Incoming:
    return Incoming(
        ref=reply["ref"],
        sku=reply["sku"],
        location=reply["location"],
        qty=int(reply["qty"]),
        expected_at=int(reply["expected_at"]),
        status=reply["status"],
        received_qty=int(reply["received_qty"]),
        created=bool(reply.get("created", False)),
        replayed=bool(reply.get("replayed", False)),
        preorders=_changes(reply["sku"], reply.get("preorders")),
    )


class _Keys(TypedDict):
    ready: str
    stock: str
    closed: str
    book: str
    events: str


class IncomingStock:
    """The incoming records' commands, over the engine's script runner."""

    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine

    def _keys(self, sku: str) -> _Keys:
        """The keys both incoming scripts take, by their handles' names."""
        k = self._engine.keys
        g = k.group_of(sku)
        return {
            "ready": k.ready(g),
            "stock": k.stock(sku),
            "closed": k.incoming_closed(sku),
            "book": k.preorders(sku),
            "events": k.events(g),
        }

    async def _sku_of(self, ref: str) -> str:
        v.ident(ref, "ref")
        raw = await self._engine.batcher.command("GET", self._engine.keys.incoming_index(ref))
        if raw is None:
            raise NotFound(f"no incoming stock {ref}")
        return str(raw.decode())

    async def put(
        self, *, ref: str, sku: str, location: str, qty: int, expected_at: int
    ) -> Incoming:
        """Create the record, or change its quantity or date (same ref, sku, location)."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location")
        v.qty(qty)
        index = self._engine.keys.incoming_index(ref)
        batcher = self._engine.batcher
        if not await batcher.command("SET", index, sku, "NX"):
            owner = await batcher.command("GET", index)
            if owner is not None and owner.decode() != sku:
                raise InvalidState(f"incoming {ref} is for SKU {owner.decode()}", status="open")
        call = sc.incoming_set(
            **self._keys(sku),
            ref=ref,
            sku=sku,
            location=location,
            qty=qty,
            expected_at=expected_at,
            now=self._engine.now(),
        )
        reply = await self._engine.run(call)
        return _incoming(reply)

    async def receive(self, ref: str, qty: int | None = None) -> Incoming:
        """Book the units on hand (the expected quantity unless `qty` says otherwise)."""
        if qty is not None:
            v.on_hand(qty, "qty")
        sku = await self._sku_of(ref)
        call = sc.incoming_close(
            **self._keys(sku),
            ref=ref,
            sku=sku,
            action="receive",
            received="" if qty is None else qty,
            now=self._engine.now(),
        )
        reply = await self._engine.run(call)
        return _incoming(reply)

    async def cancel(self, ref: str) -> Incoming:
        sku = await self._sku_of(ref)
        call = sc.incoming_close(
            **self._keys(sku),
            ref=ref,
            sku=sku,
            action="cancel",
            received="",
            now=self._engine.now(),
        )
        reply = await self._engine.run(call)
        return _incoming(reply)

    async def get(self, ref: str) -> Incoming:
        sku = await self._sku_of(ref)
        k = self._engine.keys
        open_raw, closed_raw = await self._engine.batcher.many(
            [
                (None, ("HGET", k.stock(sku), f"n:{ref}")),
                (None, ("HGET", k.incoming_closed(sku), ref)),
            ]
        )
        for r in (open_raw, closed_raw):
            if isinstance(r, BaseException):
                raise r
        if open_raw is not None:
            loc, qty, exp = orjson.loads(open_raw)
            return Incoming(ref, sku, loc, int(qty), int(exp), "open")
        if closed_raw is not None:
            loc, qty, exp, status, got = orjson.loads(closed_raw)
            return Incoming(ref, sku, loc, int(qty), int(exp), status, int(got))
        raise NotFound(f"no incoming stock {ref}")
