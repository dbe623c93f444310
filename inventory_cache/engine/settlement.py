"""Cancel and ship (and expiry's decision): the order index decides once
(`order_decide-2.lua`, the arbiter when a ship races an expiry), then every part settles
(`settle-4.lua`), each idempotent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.orders import Orders, owned_by
from inventory_cache.errors import InvalidState, NotFound
from inventory_cache.models import Reservation
from inventory_cache.script_calls import Call, Transition

_ACTION_OF_STATUS: dict[str, sc.Decision] = {
    "cancelled": "cancel",
    "shipped": "ship",
    "expired": "expire",
}


class Settlement(Orders):
    """Cancel and ship: decide on the order index, then settle every part."""

    def _settle_call(
        self,
        transition: Transition,
        g: int,
        order_id: str,
        skus: Sequence[str],
        now: int,
        token: str,
        customer: str | None = None,
    ) -> Call:
        """`settle-4.lua`'s call for the order's part in group g; with the order's
        customer, that customer's count of every SKU too, so units counted against a
        per-customer limit can go back."""
        sku_keys = [self.keys.stock(s) for s in skus]
        sku_keys += [self.keys.preorders(s) for s in skus]
        if customer:
            sku_keys += [self.keys.customer_count(s, customer) for s in skus]
        return sc.settle(
            **self._part_keys(g, order_id),
            sku_keys=sku_keys,
            order_id=order_id,
            now=now,
            retention_ms=self._finished_ms,
            skus=orjson.dumps(skus),
            token=token,
            transition=transition,
        )

    async def _decide(
        self, order_id: str, action: sc.Decision, now: int | None = None, vouch: str = ""
    ) -> dict[str, Any]:
        h = self.keys.group_of(order_id)
        at = self.now() if now is None else now

        def decide(preorders_seen: bool) -> Call:
            return sc.order_decide(
                ready=self.keys.ready(h),
                index=self.keys.order_index(order_id),
                action=action,
                now=at,
                vouch=vouch,
                preorders_seen=preorders_seen,
            )

        try:
            decided: dict[str, Any] = await self.run(decide(False))
            return decided
        except InvalidState as exc:
            if not exc.extra.get("preorders"):
                raise
            body = exc.extra["body"]
        await self._refuse_unconverted(order_id, await self._read_parts(order_id, body))
        decided = await self.run(decide(True))
        return decided

    async def _decide_finished(
        self, order_id: str, action: sc.Decision, now: int | None = None
    ) -> dict[str, Any]:
        """Decide the order only once its reservation attempt has placed every part.

        While the attempt is still placing them the index says *pending*: the parts are
        read, and the order is decided only if all of them are in place for that
        attempt (it has finished in effect; its commit is on its way). Cancel and expire
        also decide an attempt past its lease (presumed dead; releasing the parts it
        placed is always safe); a ship never ships part of an order.

        Raises:
            InvalidState: `reservation_status: pending`, the attempt is in progress.
        """
        now = self.now() if now is None else now
        try:
            return await self._decide(order_id, action, now)
        except InvalidState as exc:
            if not exc.extra.get("pending"):
                raise
            info = exc.extra
        parts = await self._read_parts(order_id, info["body"])
        placed = all(p is not None and p["tok"] == info["tok"] for p in parts.values())
        stale = now - int(info["at"]) >= self.settings.attempt_lease_seconds * 1000
        if placed or (stale and action != "ship"):
            if action == "ship":  # the index may not be marked `pre` yet
                await self._refuse_unconverted(order_id, parts)
            try:
                return await self._decide(order_id, action, now, vouch=info["tok"])
            except InvalidState as exc:
                if not exc.extra.get("pending"):
                    raise
        raise InvalidState(
            f"the reservation of {order_id} is still in progress: retry shortly",
            reservation_status="pending",
        )

    async def _apply(
        self, order_id: str, decision: dict[str, Any]
    ) -> dict[int, dict[str, Any] | None]:
        """Bring every part to the status decided on the index (idempotent, rolls forward)."""
        action = _ACTION_OF_STATUS[decision["status"]]
        now = self.now()
        if action == "expire" and "exp" in decision:
            # The index already decided "expired" on a clock past the deadline; a part
            # must not refuse it because this process's clock reads a little earlier.
            now = max(now, int(decision["exp"]))
        groups = {int(g): skus for g, skus in decision["body"]["groups"].items()}
        customer = decision["body"].get("cu")
        calls = [
            self._settle_call(action, g, order_id, skus, now, "", customer)
            for g, skus in sorted(groups.items())
        ]
        parts: dict[int, dict[str, Any] | None] = {}
        for g, r in zip(sorted(groups), await self.run_many(calls), strict=True):
            if isinstance(r, NotFound):
                parts[g] = None
            elif isinstance(r, BaseException):
                raise r
            else:
                parts[g] = r
        return parts

    async def _settle(self, order_id: str, action: sc.Decision) -> Reservation:
        v.ident(order_id, "order_id")
        try:
            decision = await self._decide_finished(order_id, action)
        except NotFound:
            return await self._settled_before(order_id, action)
        except InvalidState as exc:
            if exc.extra.get("reservation_status") is not None:  # pending, or pre-orders
                raise
            if exc.extra.get("status") in _ACTION_OF_STATUS:
                await self._apply(order_id, exc.extra)
            raise InvalidState(
                f"reservation {order_id} is {exc.extra.get('status')}",
                reservation_status=exc.extra.get("status"),
            ) from None
        parts = await self._apply(order_id, decision)
        if decision.get("lapsed"):
            raise InvalidState(f"reservation {order_id} expired", reservation_status="expired")
        if all(p is None for p in parts.values()):  # the parts left Redis before the index
            return await self._settled_before(order_id, action)
        return self._from_parts(
            order_id,
            decision["status"],
            int(decision["exp"]),
            parts,
            bool(decision.get("replayed")),
        )

    async def _settled_before(self, order_id: str, action: sc.Decision) -> Reservation:
        """Cancel or ship of an order that left Redis after the window: the answer it gave
        there, from PostgreSQL (the same action replays; another is `invalid_state`)."""
        archived = await self.archive.order(order_id) if self.archive else None
        if archived is None:
            raise NotFound(f"no reservation {order_id}")
        res = archived.reservation
        if _ACTION_OF_STATUS[res.status] == action:
            return res
        raise InvalidState(f"reservation {order_id} is {res.status}", reservation_status=res.status)

    async def cancel(self, order_id: str, *, owner: str | None = None) -> Reservation:
        """Release the locks; NotFound when the order is not `owner`'s (None: anyone's)."""
        if owner is not None:
            v.ident(order_id, "order_id")
            raw = await self.batcher.command("HGET", self.keys.order_index(order_id), "fp")
            if raw is not None:
                fp: str | None = raw.decode()
            else:  # finished and gone from Redis: its owner is in the archived fingerprint
                archived = await self.archive.order(order_id) if self.archive else None
                fp = archived.fingerprint if archived else None
            if fp is None or not owned_by(fp, owner):
                raise NotFound(f"no reservation {order_id}")
        return await self._settle(order_id, "cancel")

    async def ship(self, order_id: str) -> Reservation:
        return await self._settle(order_id, "ship")

    async def _refuse_unconverted(
        self, order_id: str, parts: Mapping[int, dict[str, Any] | None]
    ) -> None:
        """Refuse to ship an order while a pre-order line awaits its incoming stock or has
        lost it. Checked before the order index decides (a decided index is never undone);
        a converted line stays converted until its order settles, so the answer cannot
        turn between this check and the ship."""
        states = await self._preorder_states(parts)
        for p in parts.values():
            for sku, _, _, seq, _ in (p or {}).get("pre") or []:
                state = states.get((sku, int(seq)), "uncovered")
                if state != "locked":
                    raise InvalidState(
                        f"a pre-order line of {sku} is {state}: reservation {order_id} cannot "
                        "ship until its incoming stock is received",
                        reservation_status="active",
                    )
