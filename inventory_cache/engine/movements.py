"""On-hand movements (inbound, adjust, return, till events): one `movement-4.lua` call
each, idempotent by its op record."""

from __future__ import annotations

from typing import Any

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.core import EngineCore, _level, fingerprint
from inventory_cache.errors import ValidationError
from inventory_cache.models import Level
from inventory_cache.script_calls import MovementKind


class Movements(EngineCore):
    """On-hand movements, one `movement-4.lua` call each."""

    async def _move(
        self,
        kind: MovementKind,
        op_kind: str,
        *,
        ref: str,
        sku: str,
        location: str,
        reason: str,
        delta: int = 0,
        set_on_hand: int | None = None,
        expected_on_hand: int | None = None,
        body: dict[str, Any],
    ) -> Level:
        """One `movement-4.lua` call; `op_kind` names its idempotency record (`pos` for
        the three till events, which share one `event_id` space)."""
        g = self.keys.group_of(sku)
        call = sc.movement(
            ready=self.keys.ready(g),
            stock=self.keys.stock(sku),
            op=self.keys.op(op_kind, sku, ref),
            events=self.keys.events(g),
            op_id=f"{op_kind}:{ref}",
            ref=ref,
            reason=reason,
            sku=sku,
            location=location,
            delta=delta,
            set_on_hand="" if set_on_hand is None else set_on_hand,
            expected_on_hand="" if expected_on_hand is None else expected_on_hand,
            fingerprint=fingerprint(body),
            now=self.now(),
            retention_ms=self._retention_ms,
            op_suffix=self.keys.op_suffix(op_kind, sku, ref),
            kind=kind,
        )
        return _level(await self.run(call))

    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> Level:
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.qty(qty)
        body = {"ref": ref, "sku": sku, "location": location, "qty": qty}
        return await self._move(
            "inbound",
            "inbound",
            ref=ref,
            sku=sku,
            location=location,
            reason="inbound",
            delta=qty,
            body=body,
        )

    async def adjust(
        self,
        *,
        ref: str,
        sku: str,
        location: str,
        reason: str,
        delta: int | None = None,
        set_on_hand: int | None = None,
        expected_on_hand: int | None = None,
    ) -> Level:
        """A correction of on_hand; `expected_on_hand` makes a count a compare-and-set."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.reason(reason)
        if (delta is None) == (set_on_hand is None):
            raise ValidationError("give exactly one of delta and set_on_hand", field="delta")
        if delta is not None:
            v.delta(delta)
        if set_on_hand is not None:
            v.on_hand(set_on_hand)
        if expected_on_hand is not None:
            v.on_hand(expected_on_hand, "expected_on_hand")
        body = {
            "ref": ref,
            "sku": sku,
            "location": location,
            "reason": reason,
            "delta": delta,
            "set_on_hand": set_on_hand,
            "expected_on_hand": expected_on_hand,
        }
        return await self._move(
            "adjust",
            "adjust",
            ref=ref,
            sku=sku,
            location=location,
            reason=reason,
            delta=delta or 0,
            set_on_hand=set_on_hand,
            expected_on_hand=expected_on_hand,
            body=body,
        )

    async def record_return(
        self, *, ref: str, sku: str, location: str, qty: int, restock: bool
    ) -> Level:
        """A customer return; without restock it is only recorded (delta 0 in the ledger)."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.qty(qty)
        if not isinstance(restock, bool):
            raise ValidationError("restock must be true or false", field="restock")
        body = {"ref": ref, "sku": sku, "location": location, "qty": qty, "restock": restock}
        return await self._move(
            "return",
            "return",
            ref=ref,
            sku=sku,
            location=location,
            reason="restock" if restock else "no_restock",
            delta=qty if restock else 0,
            body=body,
        )

    async def pos_event(
        self, *, event_id: str, type: str, sku: str, location: str, qty: int
    ) -> Level:
        """A till or scanner event; a sale is never refused (the goods already left)."""
        v.ident(event_id, "event_id"), v.ident(sku, "sku"), v.ident(location, "location")
        body = {"event_id": event_id, "type": type, "sku": sku, "location": location, "qty": qty}
        if type == "sale":
            v.qty(qty)
            return await self._move(
                "pos_sale",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="sale",
                delta=-qty,
                body=body,
            )
        if type == "return":
            v.qty(qty)
            return await self._move(
                "pos_return",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="return",
                delta=qty,
                body=body,
            )
        if type == "count":
            v.on_hand(qty, "qty")
            return await self._move(
                "pos_count",
                "pos",
                ref=event_id,
                sku=sku,
                location=location,
                reason="count",
                set_on_hand=qty,
                body=body,
            )
        raise ValidationError("type must be sale, return or count", field="type")
