"""The expiry sweep: due orders decided once each on their index, their parts expired
with one `expire_parts-3.lua` call per group and chunk."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache.engine.core import _is_cluster
from inventory_cache.engine.settlement import _ACTION_OF_STATUS, Settlement
from inventory_cache.errors import InvalidState, InventoryError, NotFound
from inventory_cache.script_calls import Call
from inventory_cache.scripts import Command

# Parts per `expire_parts-3.lua` call: long enough to pay for the call, short enough not to
# hold Redis for more than about a millisecond.
_EXPIRE_CHUNK = 64


class Expiry(Settlement):
    """The expiry sweep."""

    async def sweep_now(self) -> int:
        """The expiry sweep's "now": Redis's clock, read once per sweep (see `expire_due`).

        On a cluster, the slowest primary's clock: it bounds them all, so no part is
        released early by any of them.
        """
        if not self._redis_clock:
            return self.now()
        if _is_cluster(self.client):
            reply = await self.client.execute_command("TIME", target_nodes="primaries")
            times = list(reply.values()) if isinstance(reply, dict) else [reply]
        else:
            times = [await self.client.time()]
        return min(int(sec) * 1000 + int(usec) // 1000 for sec, usec in times)

    async def expire_due(
        self, *, limit_per_group: int = 8, max_orders: int = 32, now: int | None = None
    ) -> int:
        """Release reservations past their TTL; returns how many parts this call expired.

        One pass: from every group's due entries, the `limit_per_group` oldest and the
        `limit_per_group` newest, taken round-robin across groups up to `max_orders`
        distinct orders; each order decided once on its index (so a racing ship wins or
        loses as a whole); then every decided part settled with one `expire_parts-3.lua`
        call per group. The work is linear in the parts due (an order of 100 lines in 80
        groups is decided once and each part expired once) and a pass is bounded (at most
        `max_orders` orders). Fairness: a backlog drains from its oldest end while what
        has just fallen due is taken from the newest end, so one client's burst of large
        orders does not hold back an unrelated order for more than a pass or two.

        `now` is the sweep's single reading of the clock (`sweep_now()` when not given):
        every decision and every part of a pass compare against the same instant, and
        that instant comes from Redis, not from this host, so a scheduler whose clock
        runs ahead releases nothing before its `expires_at`.

        A part whose index is gone (an attempt that crashed before its index survived) is
        expired on its own; an order whose attempt is still placing its parts waits for a
        later pass.
        """
        now = await self.sweep_now() if now is None else now
        groups = list(self.keys.all_groups())
        cmds: list[Command] = []
        for g in groups:
            key = self.keys.expiry(g)
            cmds.append((None, ("ZRANGEBYSCORE", key, "-inf", now, "LIMIT", 0, limit_per_group)))
            cmds.append((None, ("ZREVRANGEBYSCORE", key, now, "-inf", "LIMIT", 0, limit_per_group)))
        due = await self.batcher.many(cmds)
        for members in due:
            if isinstance(members, BaseException):
                raise members
        orders: dict[str, int] = {}
        for row in itertools.zip_longest(*due):
            for i, raw in enumerate(row):
                if raw is not None and len(orders) < max_orders:
                    orders.setdefault(raw.decode(), groups[i // 2])
        decisions = await asyncio.gather(
            *(self._expiry_decision(order_id, g, now) for order_id, g in orders.items())
        )
        work: dict[int, list[tuple[str, list[str], str]]] = defaultdict(list)
        others: list[Awaitable[dict[int, dict[str, Any] | None]]] = []
        for order_id, decision in zip(orders, decisions, strict=True):
            if decision is None:
                continue
            if decision["status"] != "expired":
                # Shipped or cancelled on its index, a part not yet: roll that forward.
                others.append(self._apply(order_id, decision))
                continue
            customer = decision["body"].get("cu", "")
            for g, skus in decision["body"]["groups"].items():
                work[int(g)].append((order_id, skus, customer))
        expired = await self._expire_parts(work, now)
        for r in await asyncio.gather(*others, return_exceptions=True):
            if isinstance(r, BaseException) and not isinstance(r, InventoryError):
                raise r
        return expired

    async def _expiry_decision(self, order_id: str, g: int, now: int) -> dict[str, Any] | None:
        """What to do with a due order: its index's decision, or None (leave it be)."""
        try:
            return await self._decide_finished(order_id, "expire", now)
        except InvalidState as exc:
            if exc.extra.get("status") not in _ACTION_OF_STATUS:
                return None  # still placing its parts, or not due on its index
            return exc.extra  # decided before: settle any part still behind
        except NotFound:
            raw, cu = await self.batcher.command(
                "HMGET", self.keys.part(g, order_id), "lines", "cu"
            )
            if raw is None:
                await self.batcher.command("ZREM", self.keys.expiry(g), order_id)
                return None
            skus = sorted({ln[0] for ln in orjson.loads(raw)} if raw != b"{}" else set())
            body: dict[str, Any] = {"groups": {str(g): skus}}
            if cu is not None:
                body["cu"] = cu.decode()
            return {"status": "expired", "body": body}

    async def _expire_parts(
        self, work: Mapping[int, list[tuple[str, list[str], str]]], now: int
    ) -> int:
        """Expire the given parts, one script call per group and chunk; returns how many
        were expired by this call (a part expired before is not counted again)."""
        calls: list[Call] = []
        for g, parts in sorted(work.items()):
            for start in range(0, len(parts), _EXPIRE_CHUNK):
                chunk = parts[start : start + _EXPIRE_CHUNK]
                keys: list[str] = []
                spec: list[list[Any]] = []
                for order_id, skus, customer in chunk:
                    keys.append(self.keys.part(g, order_id))
                    keys.extend(self.keys.stock(sku) for sku in skus)
                    keys.extend(self.keys.preorders(sku) for sku in skus)
                    if customer:
                        keys.extend(self.keys.customer_count(sku, customer) for sku in skus)
                        spec.append([order_id, skus, customer])
                    else:
                        spec.append([order_id, skus])
                calls.append(
                    sc.expire_parts(
                        ready=self.keys.ready(g),
                        expiry=self.keys.expiry(g),
                        events=self.keys.events(g),
                        part_keys=keys,
                        now=now,
                        retention_ms=self._retention_ms,
                        parts=orjson.dumps(spec),
                    )
                )
        expired = 0
        for reply in await self.run_many(calls):
            if isinstance(reply, BaseException):
                raise reply
            expired += sum(1 for outcome in reply if outcome == "expired")
        return expired
