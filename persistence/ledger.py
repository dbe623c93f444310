"""From stream entries to table rows: parse events, merge a batch into one row per key.

The worker reads entries of every group's stream (format in ARCHITECTURE.md, "Events")
and hands a batch of them to a sink, which writes it in one transaction. Everything the
sink writes is keyed, so that applying an event twice, or two events out of order, ends
in the same tables:

- `movements`: one row per (op_id, sku, location); an operation that touched one
  location twice (a reservation whose lines picked the same location) is summed into one
  row. The first delivery wins; later ones are ignored by the sink (ON CONFLICT).
- `stock_levels`: the row with the highest SKU `version` wins.
- `reservation_lines`: keyed by (order, attempt token, sku, position); `active` only ever
  moves to a final status (`released`, `cancelled`, `expired`, `shipped`).
- `transfers`: the status furthest along `requested -> in_transit -> received` (or
  `cancelled`) wins.
- `idempotency_records`: the first answer wins.
- `bundles`: the definition with the highest version wins (a delete is a version too).
- `customer_limits`: the row with the highest limit `version` wins.
- `customer_counts`: keyed by (order, attempt token, sku); `held` only ever moves to
  `returned` (a release, cancel or expiry gave the units back; a ship keeps them held).
- `incoming_stock`: one row per incoming ref; the row with the highest SKU `version`
  (the version in the event's row) wins.
- `preorder_policies`: one row per (sku, location); the highest `version` wins.
- `preorders`: one row per pre-order line, keyed by (sku, seq); its status moves only up
  the ranks `awaiting` (0) < `locked`, `uncovered` (1) < `released`, `cancelled`,
  `expired`, `shipped` (2): a higher rank replaces, an equal one keeps the first; the
  columns an event may lack (`reserved_at`, the part's fingerprint and expiry, known from
  the reservation's events only) are filled by whichever event brings them.
- `ledger_marks`: one row per batch, the newest entry of each group in it (its stream id
  and op), so that a Redis which came back without that entry is known to be behind.

Nothing here touches a database: `Batch` is plain data, which the sinks transpose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from persistence.events import (
    TRANSFER_RANK,
    BundleRow,
    Event,
    IncomingRow,
    LimitRow,
    PreorderLimitRow,
    PreorderRow,
    StreamId,
    TransferRow,
    available,
)

# A pre-order line's status in `preorders`, by rank (see the module doc).
PREORDER_RANK = {
    "awaiting": 0,
    "locked": 1,
    "uncovered": 1,
    "released": 2,
    "cancelled": 2,
    "expired": 2,
    "shipped": 2,
}

# (op_id, sku, location, type, reason, ref, d_on_hand, d_locked, on_hand_after,
#  locked_after, safety_stock_after, version, ts_ms, stream_id, bundles | None)
MovementRow = tuple[
    str, str, str, str, str, str, int, int, int, int, int, int, int, str, str | None
]
# (sku, location, on_hand, locked, safety_stock, version, ts_ms)
LevelRow = tuple[str, str, int, int, int, int, int]
# (key, sku, fingerprint, result_json, ts_ms, expires_ms)
IdemRow = tuple[str, str, str, str, int, int]
# (order_id, fingerprint | None, token, ts_ms, expires_ms)
OrderRow = tuple[str, str | None, str, int, int]
# (order_id, token, sku, position, location, qty, part_fp, status, expires_ms,
#  reserved_ms | None, settled_ms | None, the part's bundle lines JSON | None)
LineRow = tuple[str, str, str, int, str, int, str, str, int, int | None, int | None, str | None]
# (entry_ms, entry_seq, op_id): the newest entry of one group in a batch
Mark = tuple[int, int, str]
# (order_id, token, sku, customer_id, qty, generation, counted_ms, status)
CountRow = tuple[str, str, str, str, int, int, int, str]
# The part actions that give counted units back to the customer.
RETURNING = frozenset({"release", "cancel", "expire"})


@dataclass(slots=True)
class Batch:
    """What one transaction writes; each mapping holds one row per table key."""

    movements: dict[tuple[str, str, str], MovementRow] = field(default_factory=dict)
    levels: dict[tuple[str, str], LevelRow] = field(default_factory=dict)
    idempotency: dict[str, IdemRow] = field(default_factory=dict)
    orders: dict[str, OrderRow] = field(default_factory=dict)
    lines: dict[tuple[str, str, str, int], LineRow] = field(default_factory=dict)
    transfers: dict[str, TransferRow] = field(default_factory=dict)
    bundles: dict[str, BundleRow] = field(default_factory=dict)
    limits: dict[str, LimitRow] = field(default_factory=dict)
    counts: dict[tuple[str, str, str], CountRow] = field(default_factory=dict)
    incoming: dict[str, IncomingRow] = field(default_factory=dict)
    preorder_limits: dict[tuple[str, str], PreorderLimitRow] = field(default_factory=dict)
    preorders: dict[tuple[str, int], PreorderRow] = field(default_factory=dict)
    marks: dict[int, Mark] = field(default_factory=dict)
    events: int = 0

    def __len__(self) -> int:
        return self.events


def build(events: Iterable[Event], retention_ms: int) -> Batch:
    """Merge parsed events into one row per table key (the rules in the module doc)."""
    b = Batch()
    marks = b.marks
    for ev in events:
        b.events += 1
        sid = ev.entry.position
        here = (*StreamId.parse(ev.entry.id), ev.op)
        mark = marks.get(ev.entry.group)
        if mark is None or mark[:2] < here[:2]:
            marks[ev.entry.group] = here
        if ev.bundle is not None:
            cur_def = b.bundles.get(ev.bundle[0])
            if cur_def is None or cur_def[2] < ev.bundle[2]:
                b.bundles[ev.bundle[0]] = ev.bundle
        of_bundles = _bundles_of_components(ev.bdl)
        merged: dict[tuple[str, str], list[int]] = {}
        for sku, loc, doh, dl, oh, lk, ss, ver in ev.rows:
            cur = merged.get((sku, loc))
            if cur is None:
                merged[(sku, loc)] = [doh, dl, oh, lk, ss, ver]
            else:
                merged[(sku, loc)] = [cur[0] + doh, cur[1] + dl, oh, lk, ss, ver]
            level = b.levels.get((sku, loc))
            if level is None or level[5] <= ver:
                b.levels[(sku, loc)] = (sku, loc, oh, lk, ss, ver, ev.ts)
        for (sku, loc), (doh, dl, oh, lk, ss, ver) in merged.items():
            key = (ev.op, sku, loc)
            if key not in b.movements:
                b.movements[key] = (
                    *key,
                    ev.type,
                    ev.reason,
                    ev.ref,
                    doh,
                    dl,
                    oh,
                    lk,
                    ss,
                    ver,
                    ev.ts,
                    sid,
                    of_bundles.get(sku),
                )
        if ev.idem is not None and ev.idem[0] not in b.idempotency:
            sku, loc, _, _, oh, lk, ss, _ = ev.rows[0]
            result = {
                "sku": sku,
                "location": loc,
                "on_hand": oh,
                "locked": lk,
                "safety_stock": ss,
                "available": available(oh, lk, ss),
            }
            b.idempotency[ev.idem[0]] = (
                ev.idem[0],
                sku,
                ev.idem[1],
                orjson.dumps(result).decode(),
                ev.ts,
                ev.ts + retention_ms,
            )
        if ev.part is not None:
            _add_part(b, ev)
        if ev.transfer is not None:
            _add_transfer(b, ev.transfer)
        if ev.limit is not None:
            cur_limit = b.limits.get(ev.limit[0])
            if cur_limit is None or cur_limit[3] < ev.limit[3]:
                b.limits[ev.limit[0]] = ev.limit
        if ev.counted is not None and ev.part is not None:
            _add_counted(b, ev)
        if ev.incoming is not None:
            cur_in = b.incoming.get(ev.incoming[0])
            if cur_in is None or cur_in[7] < ev.incoming[7]:
                b.incoming[ev.incoming[0]] = ev.incoming
        if ev.preorder_limit is not None:
            key_pl = ev.preorder_limit[:2]
            cur_pl = b.preorder_limits.get(key_pl)
            if cur_pl is None or cur_pl[3] < ev.preorder_limit[3]:
                b.preorder_limits[key_pl] = ev.preorder_limit
        for pre in ev.preorders:
            _add_preorder(b, pre)
    return b


def _add_preorder(b: Batch, row: PreorderRow) -> None:
    """A higher status rank replaces (with its time); what is unknown yet is filled."""
    key = (row[0], row[1])
    cur = b.preorders.get(key)
    if cur is None:
        b.preorders[key] = row
        return
    up = PREORDER_RANK[row[7]] > PREORDER_RANK[cur[7]]
    b.preorders[key] = (
        *cur[:7],
        row[7] if up else cur[7],
        cur[8] if cur[8] is not None else row[8],
        row[9] if up else cur[9],
        cur[10] if cur[10] is not None else row[10],
        cur[11] if cur[11] is not None else row[11],
    )


def _bundles_of_components(bdl: str | None) -> dict[str, str]:
    """Component SKU → the bundles (comma-separated) a part's bundle lines took it for."""
    if bdl is None:
        return {}
    found: dict[str, set[str]] = {}
    for bundle, _, _, comps in orjson.loads(bdl):
        for sku, _ in comps:
            found.setdefault(sku, set()).add(bundle)
    return {sku: ",".join(sorted(b)) for sku, b in found.items()}


def marks_json(marks: Mapping[int, Mark]) -> str:
    """The `ledger_marks.marks` value of a batch: `{"<group>": [ms, seq, op], ...}`."""
    return orjson.dumps({str(g): list(m) for g, m in sorted(marks.items())}).decode()


def _add_part(b: Batch, ev: Event) -> None:
    assert ev.part is not None
    order, exp, lines, st, fp, tok, ofp = ev.part
    prior = b.orders.get(order)
    if prior is None:
        b.orders[order] = (order, ofp, tok, ev.ts, exp)
    elif prior[1] is None and ofp is not None:
        b.orders[order] = (order, ofp, *prior[2:])
    reserved = ev.ts if st == "active" else None
    settled = ev.ts if st != "active" else None
    for pos, (sku, loc, qty) in enumerate(lines):
        key = (order, tok, sku, pos)
        cur = b.lines.get(key)
        if cur is None:
            b.lines[key] = (order, tok, sku, pos, loc, qty, fp, st, exp, reserved, settled, ev.bdl)
            continue
        status = st if cur[7] == "active" else cur[7]
        b.lines[key] = (
            *cur[:7],
            status,
            cur[8],
            cur[9] if cur[9] is not None else reserved,
            cur[10] if cur[10] is not None else settled,
            cur[11] if cur[11] is not None else ev.bdl,
        )


def _add_counted(b: Batch, ev: Event) -> None:
    assert ev.counted is not None and ev.part is not None
    customer, entries, counted_at = ev.counted
    order, tok = ev.part[0], ev.part[5]
    status = "returned" if ev.type in RETURNING else "held"
    for sku, qty, gen in entries:
        key = (order, tok, sku)
        cur = b.counts.get(key)
        if cur is not None and cur[7] == "returned":
            continue
        b.counts[key] = (order, tok, sku, customer, qty, gen, counted_at, status)


def _add_transfer(b: Batch, row: TransferRow) -> None:
    cur = b.transfers.get(row[0])
    if cur is None:
        b.transfers[row[0]] = row
        return
    status = row[5] if TRANSFER_RANK[row[5]] > TRANSFER_RANK[cur[5]] else cur[5]
    b.transfers[row[0]] = (*cur[:5], status, cur[6], min(cur[7], row[7]), max(cur[8], row[8]))
