"""Reservations: every line of an order locked, or none.

The reserve path in one look: where the order's keys can meet in one script (always on a
single Redis; on a cluster when the order id and every line share a slot group) and the
order has at most `one_script_max_lines` lines (a script locking 100 lines would hold
Redis, which runs one script at a time, for milliseconds),
`reserve()` is one call of `reserve_order-2.lua`: index, every group's part and event, all
or nothing. Otherwise it opens the order's index (`index_open-2.lua`), sends
`reserve-4.lua` for every slot group of the lines in one pipeline, and, if any group
refused, releases what this attempt locked (`settle-4.lua`, transition `release`) and
drops the index, so the caller sees all lines locked or none; `index_commit-2.lua` then
marks the index finished (`_commit`), from when cancel, ship and expiry may decide it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.bundles import Bundles
from inventory_cache.engine.core import _components, fingerprint
from inventory_cache.engine.orders import owner_tag
from inventory_cache.engine.settlement import Settlement
from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    LimitExceeded,
    NotFound,
    ValidationError,
)
from inventory_cache.models import Component, LineRequest, Reservation
from inventory_cache.script_calls import Call


class Reservations(Settlement, Bundles):
    """Reserve: lock every line of an order or none (the module docstring walks the path)."""

    @staticmethod
    def merge_lines(lines: Sequence[LineRequest]) -> list[LineRequest]:
        """Sum duplicate lines of one (sku, location) so the check sees the whole demand."""
        if not 1 <= len(lines) <= v.MAX_LINES:
            raise ValidationError(f"a reservation has 1 to {v.MAX_LINES} lines", field="lines")
        total: dict[tuple[str, str | None], int] = defaultdict(int)
        for ln in lines:
            v.ident(ln.sku, "sku"), v.qty(ln.qty)
            if ln.location is not None:
                v.ident(ln.location, "location")
            total[(ln.sku, ln.location)] += ln.qty
        merged = [LineRequest(sku, q, loc) for (sku, loc), q in total.items()]
        for ln in merged:
            v.qty(ln.qty)
        return merged

    def _reserve_line_keys(self, skus: Sequence[str], customer: str | None) -> list[str]:
        """A part's line keys as the reserve scripts read them: each line's stock, then
        its SKU's limit, then its pre-order book, then (with a customer) that customer's
        count, all in line order and in the SKU's group, so the limit is checked and
        counted where the lock is."""
        keys = [self.keys.stock(s) for s in skus]
        keys += [self.keys.limit(s) for s in skus]
        keys += [self.keys.preorders(s) for s in skus]
        if customer:
            keys += [self.keys.customer_count(s, customer) for s in skus]
        return keys

    def _order_index(
        self,
        order_id: str,
        token: str,
        now: int,
        exp: int,
        whole_fp: str,
        body: dict[str, Any],
        stale_token: str = "",
    ) -> Call:
        """`index_open-2.lua`'s call for this attempt; `stale_token` takes over from it."""
        h = self.keys.group_of(order_id)
        return sc.index_open(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            fingerprint=whole_fp,
            token=token,
            now=now,
            expires_at=exp,
            body=orjson.dumps(body),
            retention_ms=self._finished_ms,
            stale_token=stale_token,
        )

    def _index_drop(self, order_id: str, token: str) -> Call:
        h = self.keys.group_of(order_id)
        return sc.index_drop(
            ready=self.keys.ready(h), index=self.keys.order_index(order_id), token=token
        )

    async def reserve(
        self,
        *,
        order_id: str,
        lines: Sequence[LineRequest],
        ttl_seconds: int | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
    ) -> Reservation:
        """Lock every line or none. `owner` (an API key id) makes the order that key's
        (`owned_by`); without one, any caller may act on it. `customer_id` counts the
        order against the per-customer limits of its SKUs (required when one has a limit)."""
        v.ident(order_id, "order_id")
        if customer_id is not None:
            v.ident(customer_id, "customer_id")
        merged = self.merge_lines(lines)
        ttl = v.ttl(
            self.settings.reservation_ttl_seconds if ttl_seconds is None else ttl_seconds,
            30 * 86400,
        )
        # The order as asked (bundle lines unexpanded): a retry with the same body replays
        # even if a bundle's definition changed meanwhile.
        canon = sorted((ln.sku, ln.location or "", ln.qty) for ln in merged)
        who: dict[str, str] = {} if customer_id is None else {"customer_id": customer_id}
        now = self.now()
        token = self._attempt_token()
        h = self.keys.group_of(order_id)
        # Without a customer the fingerprint is the one orders always had.
        whole_fp = fingerprint({"order_id": order_id, "lines": canon, "ttl": ttl, **who})
        if owner is not None:
            whole_fp = f"{owner_tag(owner)}/{whole_fp}"
        exp = now + ttl * 1000
        # Bundle definitions, None until known. On the one-script path the script finds
        # them in the stock hashes it reads anyway (`bdef`) and answers them instead of
        # locking, so an order without bundles pays no round trip for them; on the other
        # path they are read before the order index opens.
        defs: dict[str, list[Component]] | None = None
        archive_asked = False
        while True:
            by_group, body, bundle_lines, parts = self._order_plan(
                order_id, merged, defs or {}, ttl, customer_id
            )
            one_script = (
                self._one_script
                and len(merged) <= self.settings.one_script_max_lines
                and (not self._cluster or (len(by_group) == 1 and h in by_group))
            )
            if not one_script:
                if defs is None:
                    defs = await self._definitions(sorted({ln.sku for ln in merged}))
                    continue
                break
            if self.archive is not None and not archive_asked:
                # Asked first: the one call below would lock at once. A finished order
                # the archive holds answers the same from here as from Redis.
                archive_asked = True
                archived = await self.archive.order(order_id)
                if archived is not None:
                    if archived.fingerprint != whole_fp:
                        raise IdempotencyMismatch()
                    return archived.reservation
            opened = await self._reserve_at_once(
                order_id, token, now, exp, whole_fp, body, parts, customer_id, defs is None
            )
            if "bundles" in opened:
                defs = {sku: _components(raw) or [] for sku, raw in opened["bundles"].items()}
                continue
            if not opened.get("dup"):
                held = {
                    g: {**part, "bdl": bundle_lines.get(g, [])}
                    for g, part in zip(sorted(by_group), opened["parts"], strict=True)
                }
                return self._from_parts(order_id, "active", exp, held)
            if defs is None:  # a takeover below reserves the parts: expanded
                defs = await self._definitions(sorted({ln.sku for ln in merged}))
                by_group, body, bundle_lines, parts = self._order_plan(
                    order_id, merged, defs, ttl, customer_id
                )
            break
        if not one_script:
            opened = await self.run(self._order_index(order_id, token, now, exp, whole_fp, body))
            if opened.get("new") and self.archive is not None:
                archived = await self.archive.order(order_id)
                if archived is not None:  # finished, and its keys left Redis after the window
                    await self.run(self._index_drop(order_id, token))
                    if archived.fingerprint != whole_fp:
                        raise IdempotencyMismatch()
                    return archived.reservation
        takeover = False
        if opened.get("dup"):
            if opened["st"] != "active":
                return await self.get_reservation(order_id, replayed=True)
            found = await self._read_parts(order_id, opened["body"])
            if all(p is not None for p in found.values()):
                # Past its TTL the order is over even before the sweep releases it; say
                # so, as get_reservation does, rather than replay a stale "active".
                status = "active" if now < int(opened["exp"]) else "expired"
                states = await self._preorder_states(found) if status == "active" else None
                return self._from_parts(
                    order_id, status, int(opened["exp"]), found, replayed=True, states=states
                )
            if now - int(opened["at"]) < self.settings.attempt_lease_seconds * 1000:
                raise InvalidState("a reservation for this order is in progress: retry shortly")
            again = await self.run(
                self._order_index(order_id, token, now, exp, whole_fp, body, opened["tok"])
            )
            if not again.get("new"):
                raise InvalidState("a reservation for this order is in progress: retry shortly")
            takeover, exp = True, int(opened["exp"])
        return await self._reserve_parts(
            order_id,
            token,
            by_group,
            parts,
            now,
            exp,
            takeover,
            whole_fp,
            bundle_lines,
            customer_id,
        )

    def _order_plan(
        self,
        order_id: str,
        merged: Sequence[LineRequest],
        defs: Mapping[str, list[Component]],
        ttl: int,
        customer: str | None,
    ) -> tuple[
        dict[int, list[LineRequest]],
        dict[str, Any],
        dict[int, list[Any]],
        list[tuple[int, str, list[str], bytes, bytes]],
    ]:
        """The order's lines expanded with `defs`, by group; the index body (where the
        parts live); each group's bundle lines; each group's part (`_part_specs`)."""
        expanded, uses = self._expand(merged, defs)
        by_group: dict[int, list[LineRequest]] = defaultdict(list)
        for ln in expanded:
            by_group[self.keys.group_of(ln.sku)].append(ln)
        body: dict[str, Any] = {
            "groups": {str(g): sorted({ln.sku for ln in ls}) for g, ls in by_group.items()}
        }
        if customer is not None:
            body["cu"] = customer
        bundle_lines = self._bundle_lines_by_group(uses)
        return (
            by_group,
            body,
            bundle_lines,
            self._part_specs(order_id, by_group, ttl, bundle_lines, customer),
        )

    def _part_specs(
        self,
        order_id: str,
        by_group: dict[int, list[LineRequest]],
        ttl: int,
        bundle_lines: dict[int, list[Any]],
        customer: str | None,
    ) -> list[tuple[int, str, list[str], bytes, bytes]]:
        """Each group's part, by ascending group: (group, part fingerprint, SKUs of its
        lines, lines JSON as `planPart.lua` reads them, its bundle lines JSON or b""),
        lines in (sku, location) order. The customer is part of the fingerprint: the
        same lines for another customer count against another limit."""
        who = {} if customer is None else {"customer_id": customer}
        specs: list[tuple[int, str, list[str], bytes, bytes]] = []
        for g in sorted(by_group):
            ls = sorted(by_group[g], key=lambda ln: (ln.sku, ln.location or ""))
            part: dict[str, Any] = {
                "order_id": order_id,
                "ttl": ttl,
                "lines": [(ln.sku, ln.location or "", ln.qty) for ln in ls],
                **who,
            }
            bdl = bundle_lines.get(g)
            if bdl:
                part["bundles"] = bdl
            spec = orjson.dumps([[ln.sku, ln.location or "", ln.qty] for ln in ls])
            specs.append(
                (
                    g,
                    fingerprint(part),
                    [ln.sku for ln in ls],
                    spec,
                    orjson.dumps(bdl) if bdl else b"",
                )
            )
        return specs

    async def _reserve_at_once(
        self,
        order_id: str,
        token: str,
        now: int,
        exp: int,
        whole_fp: str,
        body: dict[str, Any],
        parts: Sequence[tuple[int, str, list[str], bytes, bytes]],
        customer: str | None,
        find_bundles: bool,
    ) -> dict[str, Any]:
        """The whole reservation in one `reserve_order-2.lua` call: the index written
        committed with every part (limits checked and counted with the locks), or nothing
        written. Its reply, or the index it found (`dup`), which `reserve` answers as
        after `index_open-2.lua`; with `find_bundles` (lines as the client sent them), or
        the definitions of the bundles among them (`bundles`), nothing written."""
        h = self.keys.group_of(order_id)
        part_keys: list[str] = []
        part_args: list[Any] = []
        for g, part_fp, skus, spec, bdl in parts:
            k = self._part_keys(g, order_id)  # in reserve-4.lua's KEYS order
            part_keys += [k["ready"], k["part"], k["expiry"], k["events"]]
            part_keys += self._reserve_line_keys(skus, customer)
            part_args += [part_fp, len(skus), spec, bdl]
        call = sc.reserve_order(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            part_keys=part_keys,
            order_id=order_id,
            token=token,
            now=now,
            expires_at=exp,
            order_fingerprint=whole_fp,
            body=orjson.dumps(body),
            retention_ms=self._finished_ms,
            customer_id=customer or "",
            find_bundles=find_bundles,
            parts=part_args,
            priority=self._priority,
        )
        reply: dict[str, Any] = await self.run(call)
        return reply

    async def _reserve_parts(
        self,
        order_id: str,
        token: str,
        by_group: dict[int, list[LineRequest]],
        parts: Sequence[tuple[int, str, list[str], bytes, bytes]],
        now: int,
        exp: int,
        takeover: bool,
        whole_fp: str,
        bundle_lines: dict[int, list[Any]],
        customer: str | None,
    ) -> Reservation:
        groups = [g for g, _, _, _, _ in parts]
        calls = [
            sc.reserve(
                **self._part_keys(g, order_id),
                line_keys=self._reserve_line_keys(skus, customer),
                order_id=order_id,
                token=token,
                part_fingerprint=part_fp,
                now=now,
                expires_at=exp,
                priority=self._priority,
                lines=spec,
                order_fingerprint=whole_fp,
                bundle_lines=bdl,
                customer_id=customer or "",
            )
            for g, part_fp, skus, spec, bdl in parts
        ]
        results = await self.run_many(calls)
        short: list[dict[str, Any]] = []
        over: list[dict[str, Any]] = []
        failure: BaseException | None = None
        held: dict[int, dict[str, Any]] = {}
        for g, r in zip(groups, results, strict=True):
            if isinstance(r, InsufficientStock):
                short.extend(r.lines)
            elif isinstance(r, LimitExceeded):
                over.extend(r.lines)
            elif isinstance(r, BaseException):
                failure = failure or r
            else:
                held[g] = {**r, "bdl": bundle_lines.get(g, [])}
        if not short and not over and failure is None:
            return await self._commit(order_id, token, exp, held, by_group, takeover, customer)
        await self._compensate(order_id, token, held, by_group, takeover, customer)
        if failure is not None:
            raise failure
        if over:  # the customer cannot take these whatever the stock
            raise LimitExceeded(over)
        raise InsufficientStock(short)

    async def _commit(
        self,
        order_id: str,
        token: str,
        exp: int,
        held: dict[int, dict[str, Any]],
        by_group: dict[int, list[LineRequest]],
        takeover: bool,
        customer: str | None,
    ) -> Reservation:
        """Every part is in place: mark the attempt finished on the index, so ship, cancel
        and expiry may decide the order from now on (until then they answer "in progress").

        A ship or cancel that saw every part in place may have decided first; that came
        after this reservation in effect, so the answer stays `active`. An attempt presumed
        dead and compensated or taken over meanwhile undoes what it still holds.
        """
        h = self.keys.group_of(order_id)
        commit = sc.index_commit(
            ready=self.keys.ready(h),
            index=self.keys.order_index(order_id),
            token=token,
            preorders=any(p.get("pre") for p in held.values()),
        )
        try:
            done = await self.run(commit)
        except (NotFound, InvalidState):
            await self._compensate(order_id, token, held, by_group, takeover, customer)
            raise InvalidState(
                "this reservation attempt outlived its lease and was superseded: retry",
                reservation_status="pending",
            ) from None
        if done["status"] == "expired":
            # Only a sweep that presumed this attempt dead decides while parts are missing:
            # roll the decision forward onto the parts this attempt placed since.
            body: dict[str, Any] = {
                "groups": {str(g): sorted({ln.sku for ln in ls}) for g, ls in by_group.items()}
            }
            if customer is not None:
                body["cu"] = customer
            await self._apply(order_id, {"status": "expired", "exp": exp, "body": body})
            raise InvalidState(
                f"reservation {order_id} expired", status="expired", reservation_status="expired"
            )
        return self._from_parts(order_id, "active", exp, held)

    async def _compensate(
        self,
        order_id: str,
        token: str,
        held: dict[int, dict[str, Any]],
        by_group: dict[int, list[LineRequest]],
        takeover: bool,
        customer: str | None,
    ) -> None:
        """Undo what this attempt locked (and counted), then drop the index it opened."""
        now = self.now()
        calls = [
            self._settle_call(
                "release",
                g,
                order_id,
                sorted({ln.sku for ln in by_group[g]}),
                now,
                "" if takeover else token,
                customer,
            )
            for g, r in held.items()
            if takeover or not r.get("replayed")
        ]
        for r in await self.run_many(calls):
            if isinstance(r, BaseException) and not isinstance(r, NotFound):
                raise r
        await self.run(self._index_drop(order_id, token))
