"""An order as Redis holds it: its index, its parts (one per slot group of its lines),
the state of its pre-order lines; and who may see it (`owned_by`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, TypedDict

import orjson

from inventory_cache import validation as v
from inventory_cache.engine.core import EngineCore
from inventory_cache.errors import NotFound
from inventory_cache.incoming import BOOK_STATES
from inventory_cache.models import Component, Reservation, ReservedBundle, ReservedLine
from inventory_cache.scripts import Command


def owner_tag(owner: str) -> str:
    """An owner (API key id) as kept in an order's fingerprint: the id itself when short
    (generated ids are 20 characters), else a digest, so `<tag>/<sha1>` fits the ledger's
    64-character `fingerprint` column."""
    return owner if len(owner) <= 23 else hashlib.sha256(owner.encode()).hexdigest()[:23]


def owned_by(order_fp: str, owner: str | None) -> bool:
    """Whether an order whose whole fingerprint is `order_fp` may be seen by a caller
    restricted to `owner` (None: any caller).

    The owner rides in the fingerprint (`<owner tag>/<sha1>`) rather than in a field of
    its own because the fingerprint already travels everywhere an order does: the index,
    each part (`ofp`), the stream, the ledger (`reservations.fingerprint`) and back through
    warmup. A retry by another key then differs in fingerprint: 409 idempotency_mismatch.
    """
    tag, sep, _ = order_fp.rpartition("/")
    # An order without an owner (made by the engine directly, or before owners were
    # recorded) is anyone's.
    return owner is None or not sep or tag == owner_tag(owner)


def _bdl(raw: Any) -> list[Any]:
    """A part's bundle lines (`bdl`): JSON text from Redis, or the list the engine sent."""
    if isinstance(raw, bytes | str):
        raw = orjson.loads(raw) if raw else []
    return raw if isinstance(raw, list) else []  # cjson encodes an empty array as {}


def reserved_bundles(parts: Iterable[dict[str, Any] | None]) -> list[ReservedBundle]:
    """The bundle lines of an order, put together from its parts (each part names the
    components that fall in its group)."""
    merged: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
    for p in parts:
        if p is None:
            continue
        for sku, qty, loc, comps in _bdl(p.get("bdl")):
            _, units = merged.setdefault((sku, loc), (int(qty), {}))
            for comp, each in comps:
                units[comp] = int(qty) * int(each)
    return [
        ReservedBundle(sku, qty, loc or None, [Component(c, u) for c, u in sorted(units.items())])
        for (sku, loc), (qty, units) in sorted(merged.items())
    ]


def _lines(raw: Any) -> list[ReservedLine]:
    # cjson encodes an empty array as {}.
    if not isinstance(raw, list):
        return []
    return [ReservedLine(sku=s, qty=int(q), location=loc) for s, loc, q in raw]


def _pre_lines(
    raw: Any, states: Mapping[tuple[str, int], str] | None, missing: str = "uncovered"
) -> list[ReservedLine]:
    """A part's pre-order lines (`pre`: `[[sku, location, qty, seq, expected_at], ...]`);
    `states` maps (sku, seq) to the line's state in its SKU's book while the order is
    active (None once it is not: the book forgets a settled order's lines); a line not
    there is `missing`."""
    if not isinstance(raw, list):
        return []
    return [
        ReservedLine(
            sku=s,
            qty=int(q),
            location=loc,
            preorder=True,
            expected_at=int(exp),
            preorder_status=None if states is None else states.get((s, int(seq)), missing),
        )
        for s, loc, q, seq, exp in raw
    ]


class PartKeys(TypedDict):
    """The keys of an order's part in group g as `reserve`, `reserve_order` (per group)
    and `settle` take them first, by their handles' names."""

    ready: str
    part: str
    expiry: str
    events: str


class Orders(EngineCore):
    """An order as Redis holds it: reading its parts and pre-order states."""

    def _part_keys(self, g: int, order_id: str) -> PartKeys:
        return {
            "ready": self.keys.ready(g),
            "part": self.keys.part(g, order_id),
            "expiry": self.keys.expiry(g),
            "events": self.keys.events(g),
        }

    async def _read_parts(
        self, order_id: str, body: dict[str, Any]
    ) -> dict[int, dict[str, Any] | None]:
        groups = [int(g) for g in body["groups"]]
        cmds: list[Command] = [(None, ("HGETALL", self.keys.part(g, order_id))) for g in groups]
        raws = await self.batcher.many(cmds)
        out: dict[int, dict[str, Any] | None] = {}
        for g, raw in zip(groups, raws, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            out[g] = (
                {
                    "status": raw[b"st"].decode(),
                    "lines": orjson.loads(raw[b"lines"]),
                    "tok": raw.get(b"tok", b"").decode(),
                    "bdl": raw.get(b"bdl", b""),
                    "pre": orjson.loads(raw[b"pre"]) if b"pre" in raw else None,
                }
                if raw
                else None
            )
        return out

    async def _preorder_states(
        self, parts: Mapping[int, dict[str, Any] | None]
    ) -> dict[tuple[str, int], str]:
        """The book state of every pre-order line of an active order's parts."""
        wanted = [
            (sku, int(seq))
            for p in parts.values()
            if p is not None and isinstance(p.get("pre"), list)
            for sku, _, _, seq, _ in p["pre"]
        ]
        if not wanted:
            return {}
        raws = await self.batcher.many(
            [(None, ("HGET", self.keys.preorders(sku), seq)) for sku, seq in wanted]
        )
        states: dict[tuple[str, int], str] = {}
        for key, raw in zip(wanted, raws, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            if raw is not None:
                states[key] = BOOK_STATES[orjson.loads(raw)[5]]
        return states

    @staticmethod
    def _from_parts(
        order_id: str,
        status: str,
        exp: int,
        parts: Mapping[int, dict[str, Any] | None],
        replayed: bool = False,
        states: Mapping[tuple[str, int], str] | None = None,
    ) -> Reservation:
        """The order from its parts: every part's locked lines, then its pre-order lines
        (their states from `states` while active; a line not found there has just been
        taken when the order is new, so `awaiting`)."""
        lines: list[ReservedLine] = []
        pre: list[ReservedLine] = []
        for g in sorted(parts):
            p = parts[g]
            if p is not None:
                lines.extend(_lines(p["lines"]))
                if p.get("pre"):
                    known = (states or {}) if status == "active" else None
                    missing = "uncovered" if states is not None else "awaiting"
                    pre.extend(_pre_lines(p["pre"], known, missing))
        lines.extend(pre)
        bundles = reserved_bundles(parts.values())
        return Reservation(order_id, status, exp, lines, replayed, bundles)  # type: ignore[arg-type]

    async def get_reservation(
        self, order_id: str, *, replayed: bool = False, owner: str | None = None
    ) -> Reservation:
        """The order; NotFound also when it is not `owner`'s (None: anyone's)."""
        v.ident(order_id, "order_id")
        raw = await self.batcher.command("HGETALL", self.keys.order_index(order_id))
        if raw and not owned_by(raw[b"fp"].decode(), owner):
            raise NotFound(f"no reservation {order_id}")
        parts = await self._read_parts(order_id, orjson.loads(raw[b"body"])) if raw else {}
        if all(p is None for p in parts.values()):
            archived = await self.archive.order(order_id) if self.archive else None
            if archived is None or not owned_by(archived.fingerprint, owner):
                raise NotFound(f"no reservation {order_id}")
            return replace(archived.reservation, replayed=replayed)
        status = raw[b"st"].decode()
        exp = int(raw[b"exp"])
        if status == "active" and self.now() >= exp:
            status = "expired"
        states = await self._preorder_states(parts) if status == "active" else None
        return self._from_parts(order_id, status, exp, parts, replayed, states)
