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
from typing import Any

import orjson

RESERVATION_FIELDS = ("order", "exp", "lines", "st", "fp", "tok")
TRANSFER_FIELDS = ("tid", "sku", "from", "to", "qty", "st", "fp")
PART_STATUSES = frozenset({"active", "released", "cancelled", "expired", "shipped"})
TRANSFER_RANK = {"requested": 0, "in_transit": 1, "received": 2, "cancelled": 2}
INCOMING_STATUSES = frozenset({"open", "received", "cancelled"})
INCOMING_REASONS = frozenset(
    {"incoming_create", "incoming_change", "incoming_receive", "incoming_cancel"}
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
# The states an incoming event's `pre` moves lines to.
PREORDER_MOVES = frozenset({"locked", "uncovered"})


class MalformedEvent(ValueError):
    """A stream entry that can never be applied; the worker dead-letters it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: the group of its stream, its id (`ms-seq`) and raw fields."""

    group: int
    id: str
    fields: Mapping[bytes, bytes]

    @property
    def position(self) -> str:
        """The entry as the change feed names it: `<ms>-<group>-<seq>`."""
        ms, _, seq = self.id.partition("-")
        return f"{ms}-{self.group}-{seq}"


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
# (bundle sku, components JSON | None when deleted, version, ts_ms)
BundleRow = tuple[str, str | None, int, int]
# (transfer_id, sku, from, to, qty, status, fingerprint, first_ts_ms, last_ts_ms)
TransferRow = tuple[str, str, str, str, int, str, str, int, int]
# (entry_ms, entry_seq, op_id): the newest entry of one group in a batch
Mark = tuple[int, int, str]
# (sku, per_customer, window_seconds, version, generation, ts_ms)
LimitRow = tuple[str, int, int, int, int, int]
# (ref, sku, location, qty, expected_ms, status, received_qty, version, ts_ms)
IncomingRow = tuple[str, str, str, int, int, str, int, int, int]
# (sku, location, preorder_limit, version, ts_ms)
PreorderLimitRow = tuple[str, str, int, int, int]
# (sku, seq, order_id, token, location, qty, expected_ms, status, reserved_ms | None,
#  updated_ms, part fingerprint | None, part expires_ms | None)
PreorderRow = tuple[str, int, str, str, str, int, int, str, int | None, int, str | None, int | None]
# (order_id, token, sku, customer_id, qty, generation, counted_ms, status)
CountRow = tuple[str, str, str, str, int, int, int, str]
# What a part counted against per-customer limits: (customer, [(sku, qty, gen)], counted_ms)
Counted = tuple[str, list[tuple[str, int, int]], int]
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


def _text(fields: Mapping[bytes, bytes], name: str) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        raise MalformedEvent(f"missing field {name!r}")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise MalformedEvent(f"field {name!r} is not UTF-8") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise MalformedEvent(f"{what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MalformedEvent(f"{what} is not an integer: {value!r}")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{what} is not a non-empty string: {value!r}")
    return value


def _json_list(fields: Mapping[bytes, bytes], name: str) -> list[Any]:
    raw = fields.get(name.encode())
    if raw is None:
        raise MalformedEvent(f"missing field {name!r}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedEvent(f"field {name!r} is not JSON") from None
    if value == {}:  # cjson encodes an empty array as {}
        return []
    if not isinstance(value, list):
        raise MalformedEvent(f"field {name!r} is not a JSON array")
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One parsed entry: the ledger rows and the record it carries, validated."""

    entry: Entry
    type: str
    op: str
    ts: int
    ref: str
    reason: str
    rows: list[tuple[str, str, int, int, int, int, int, int]]
    idem: tuple[str, str] | None  # (idempotency key, fingerprint)
    part: tuple[str, int, list[tuple[str, str, int]], str, str, str, str | None] | None
    # (order, exp, lines, status, part fp, token, order fp)
    transfer: TransferRow | None
    bdl: str | None = None  # the part's bundle lines (JSON as the script got them)
    bundle: BundleRow | None = None  # a bundle's definition changed ('bundle' events)
    limit: LimitRow | None = None
    counted: Counted | None = None
    # 'incoming' events: the record after the change
    incoming: IncomingRow | None = None
    # the pre-order lines the event names: a part's (`pre`, with the part's status), or
    # those an incoming change locked or uncovered
    preorders: tuple[PreorderRow, ...] = ()
    # 'policy' events with `pl`: a (sku, location)'s pre-order limit
    preorder_limit: PreorderLimitRow | None = None


def _bundle_lines(raw: bytes | None) -> str | None:
    """A part's `bdl`, checked: [[bundle, qty, location or '', [[sku, qty], ...]], ...]."""
    if not raw:
        return None
    try:
        text = raw.decode()
        value = orjson.loads(text)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        raise MalformedEvent("field 'bdl' is not JSON") from None
    if value == {}:
        return None
    ok = isinstance(value, list) and all(
        isinstance(b, list)
        and len(b) == 4
        and isinstance(b[0], str)
        and type(b[1]) is int
        and isinstance(b[2], str)
        and isinstance(b[3], list)
        and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and type(c[1]) is int
            for c in b[3]
        )
        for b in value
    )
    if not ok:
        raise MalformedEvent(f"field 'bdl' is not a list of bundle lines: {text!r}")
    return text


def _bundle_change(f: Mapping[bytes, bytes], ts: int) -> BundleRow:
    """A 'bundle' event's definition: `bundle`, `comps` ('' once deleted), `v`."""
    sku = _text(f, "bundle")
    comps = _text(f, "comps")
    version = _int(_text(f, "v"), "v")
    if comps:
        try:
            value = orjson.loads(comps)
        except orjson.JSONDecodeError:
            raise MalformedEvent("field 'comps' is not JSON") from None
        if not isinstance(value, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and type(c[1]) is int
            for c in value
        ):
            raise MalformedEvent(f"field 'comps' is not [[sku, qty], ...]: {comps!r}")
    return (_str(sku, "bundle"), comps or None, version, ts)


def _incoming_change(
    f: Mapping[bytes, bytes], ts: int, reason: str, rows: list[Any]
) -> tuple[IncomingRow, tuple[PreorderRow, ...]]:
    """An 'incoming' event's record (`in`) and the pre-order lines it moved (`pre`)."""
    ref = _text(f, "ref")
    if reason not in INCOMING_REASONS:
        raise MalformedEvent(f"unknown incoming reason {reason!r}")
    raw = _json_list(f, "in")
    if len(raw) != 6:
        raise MalformedEvent(
            f"field 'in' is not [sku, location, qty, expected_at, status, received_qty]: {raw!r}"
        )
    sku, loc = _str(raw[0], "incoming sku"), _str(raw[1], "incoming location")
    qty, exp = _int(raw[2], "incoming qty"), _int(raw[3], "incoming expected_at")
    status, received = raw[4], _int(raw[5], "incoming received_qty")
    if status not in INCOMING_STATUSES:
        raise MalformedEvent(f"unknown incoming status {status!r}")
    if qty < 0 or received < 0:
        raise MalformedEvent(f"a negative incoming quantity: {raw!r}")
    if len(rows) != 1 or rows[0][:2] != (sku, loc):
        raise MalformedEvent(f"an incoming event has exactly one row, of {sku}@{loc}")
    moved = []
    if b"pre" in f:
        for p in _json_list(f, "pre"):
            if not isinstance(p, list) or len(p) != 7:
                raise MalformedEvent(
                    "a pre-order change is not [order, token, seq, location, qty, expected_at,"
                    f" state]: {p!r}"
                )
            if p[6] not in PREORDER_MOVES:
                raise MalformedEvent(f"unknown pre-order state {p[6]!r}")
            moved.append(
                (
                    sku,
                    _seq(p[2]),
                    _str(p[0], "pre-order order"),
                    _str(p[1], "pre-order token"),
                    _str(p[3], "pre-order location"),
                    _int(p[4], "pre-order qty"),
                    _int(p[5], "pre-order expected_at"),
                    str(p[6]),
                    None,
                    ts,
                    None,
                    None,
                )
            )
    return (ref, sku, loc, qty, exp, status, received, rows[0][7], ts), tuple(moved)


def _seq(value: Any) -> int:
    seq = _int(value, "pre-order seq")
    if seq < 1:
        raise MalformedEvent(f"a pre-order seq is not positive: {value!r}")
    return seq


def _part_preorders(f: Mapping[bytes, bytes], part: Any, ts: int) -> tuple[PreorderRow, ...]:
    """A part event's pre-order lines (`pre`), with the part's status (`awaiting` while
    active)."""
    order, exp, _, st, fp, tok, _ = part
    status = "awaiting" if st == "active" else st
    reserved = ts if st == "active" else None
    out = []
    for p in _json_list(f, "pre"):
        if not isinstance(p, list) or len(p) != 5:
            raise MalformedEvent(
                f"a pre-order line is not [sku, location, qty, seq, expected_at]: {p!r}"
            )
        out.append(
            (
                _str(p[0], "pre-order sku"),
                _seq(p[3]),
                order,
                tok,
                _str(p[1], "pre-order location"),
                _int(p[2], "pre-order qty"),
                _int(p[4], "pre-order expected_at"),
                status,
                reserved,
                ts,
                fp,
                exp,
            )
        )
    return tuple(out)


def _preorder_limit(f: Mapping[bytes, bytes], ts: int, rows: list[Any]) -> PreorderLimitRow:
    """A 'policy' event's pre-order limit (`pl`), at the version of its (sku, location)'s row."""
    raw = _json_list(f, "pl")
    if len(raw) != 3:
        raise MalformedEvent(f"field 'pl' is not [sku, location, preorder_limit]: {raw!r}")
    sku, loc = _str(raw[0], "pre-order limit sku"), _str(raw[1], "pre-order limit location")
    limit = _int(raw[2], "preorder_limit")
    if limit < 0:
        raise MalformedEvent(f"a negative pre-order limit: {raw!r}")
    row = next((r for r in rows if r[:2] == (sku, loc)), None)
    if row is None:
        raise MalformedEvent(f"no row of {sku}@{loc} for its pre-order limit")
    return (sku, loc, limit, row[7], ts)


class _Unusual(Exception):
    """The fast path met something it does not decide on; the checked path will."""


def _fast_str(v: Any) -> str:
    if type(v) is not str or not v:
        raise _Unusual
    return v


def _fast_int(v: Any) -> int:
    if type(v) is not int:
        raise _Unusual
    return v


def _fast_seq(v: Any) -> int:
    if type(v) is not int or v < 1:
        raise _Unusual
    return v


def _fast_move(v: Any) -> str:
    if v not in PREORDER_MOVES:
        raise _Unusual
    return str(v)


def _parse_fast(entry: Entry) -> Event:
    """The common case, strictly typed; anything else raises and goes to `_parse_checked`."""
    f = entry.fields
    type_, op, ts = f[b"t"].decode(), f[b"op"].decode(), int(f[b"ts"])
    raw = f.get(b"ref")
    ref = op if raw is None else raw.decode()
    raw = f.get(b"reason")
    reason = type_ if raw is None else raw.decode()
    rows = []
    for sku, loc, doh, dl, oh, lk, ss, ver in orjson.loads(f[b"rows"]):
        rows.append(
            (
                _fast_str(sku),
                _fast_str(loc),
                _fast_int(doh),
                _fast_int(dl),
                _fast_int(oh),
                _fast_int(lk),
                _fast_int(ss),
                _fast_int(ver),
            )
        )
    if not rows and type_ != "limit":
        raise _Unusual
    raw = f.get(b"idem")
    idem = None if raw is None else (raw.decode(), f[b"fp"].decode())
    part = None
    bdl = None
    if b"order" in f:
        bdl = _bundle_lines(f.get(b"bdl"))
        st = f[b"st"].decode()
        if st not in PART_STATUSES:
            raise _Unusual
        lines = [
            (_fast_str(sku), _fast_str(loc), _fast_int(qty))
            for sku, loc, qty in orjson.loads(f[b"lines"])
        ]
        raw = f.get(b"ofp")
        part = (
            f[b"order"].decode(),
            int(f[b"exp"]),
            lines,
            st,
            f[b"fp"].decode(),
            f[b"tok"].decode(),
            None if raw is None else raw.decode(),
        )
    transfer = None
    if b"tid" in f:
        st = f[b"st"].decode()
        if st not in TRANSFER_RANK:
            raise _Unusual
        transfer = (
            f[b"tid"].decode(),
            f[b"sku"].decode(),
            f[b"from"].decode(),
            f[b"to"].decode(),
            int(f[b"qty"]),
            st,
            f[b"fp"].decode(),
            ts,
            ts,
        )
    limit = None
    if type_ == "limit":
        limit = (
            _fast_str(f[b"sku"].decode()),
            int(f[b"n"]),
            int(f[b"w"]),
            int(f[b"v"]),
            int(f[b"gen"]),
            ts,
        )
    counted = None
    if b"cnt" in f:
        if part is None:
            raise _Unusual
        counted = (
            _fast_str(f[b"cu"].decode()),
            [
                (_fast_str(sku), _fast_int(qty), _fast_int(gen))
                for sku, qty, gen in orjson.loads(f[b"cnt"])
            ],
            int(f[b"cat"]) if b"cat" in f else ts,
        )
    incoming = None
    preorders: tuple[PreorderRow, ...] = ()
    if type_ == "incoming":
        if b"ref" not in f or reason not in INCOMING_REASONS or len(rows) != 1:
            raise _Unusual
        sku, loc, qty, exp, st, got = orjson.loads(f[b"in"])
        if st not in INCOMING_STATUSES or rows[0][:2] != (sku, loc):
            raise _Unusual
        if _fast_int(qty) < 0 or _fast_int(got) < 0:
            raise _Unusual
        incoming = (ref, sku, loc, qty, _fast_int(exp), st, got, rows[0][7], ts)
        if b"pre" in f:
            preorders = tuple(
                (
                    sku,
                    _fast_seq(seq),
                    _fast_str(order),
                    _fast_str(tok),
                    _fast_str(ploc),
                    _fast_int(pqty),
                    _fast_int(pexp),
                    _fast_move(state),
                    None,
                    ts,
                    None,
                    None,
                )
                for order, tok, seq, ploc, pqty, pexp, state in orjson.loads(f[b"pre"])
            )
    elif b"in" in f:
        raise _Unusual
    elif b"pre" in f:
        if part is None:
            raise _Unusual
        order, exp, _, st, fp, tok, _ = part
        status = "awaiting" if st == "active" else st
        reserved = ts if st == "active" else None
        preorders = tuple(
            (
                _fast_str(sku),
                _fast_seq(seq),
                order,
                tok,
                _fast_str(ploc),
                _fast_int(pqty),
                _fast_int(pexp),
                status,
                reserved,
                ts,
                fp,
                exp,
            )
            for sku, ploc, pqty, seq, pexp in orjson.loads(f[b"pre"])
        )
    preorder_limit = None
    if b"pl" in f or (type_ == "policy" and reason == "preorder_limit"):
        if type_ != "policy":
            raise _Unusual
        sku, loc, n = orjson.loads(f[b"pl"])
        if _fast_int(n) < 0:
            raise _Unusual
        row = next(r for r in rows if r[:2] == (sku, loc))
        preorder_limit = (sku, loc, n, row[7], ts)
    return Event(
        entry,
        type_,
        op,
        ts,
        ref,
        reason,
        rows,
        idem,
        part,
        transfer,
        bdl,
        None,
        limit,
        counted,
        incoming,
        preorders,
        preorder_limit,
    )


def parse(entry: Entry) -> Event:
    """Validate and decode one entry; raises MalformedEvent, never writes anything."""
    try:
        return _parse_fast(entry)
    except Exception:
        return _parse_checked(entry)


def _parse_checked(entry: Entry) -> Event:
    """Every field checked, each failure named (also accepts integers sent as text)."""
    f = entry.fields
    type_, op = _text(f, "t"), _text(f, "op")
    ts = _int(_text(f, "ts"), "ts")
    ref = _text(f, "ref") if b"ref" in f else op
    reason = _text(f, "reason") if b"reason" in f else type_
    rows = []
    for raw in _json_list(f, "rows"):
        if not isinstance(raw, list) or len(raw) != 8:
            raise MalformedEvent(f"a row is not [sku, location, 6 integers]: {raw!r}")
        sku, loc = _str(raw[0], "row sku"), _str(raw[1], "row location")
        nums = [_int(x, "row value") for x in raw[2:]]
        rows.append((sku, loc, nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]))
    if type_ == "bundle":
        return Event(
            entry, type_, op, ts, ref, reason, rows, None, None, None, bundle=_bundle_change(f, ts)
        )
    if not rows and type_ != "limit":
        raise MalformedEvent("an event without rows changes nothing")
    idem = None
    if b"idem" in f:
        idem = (_text(f, "idem"), _text(f, "fp"))
    part = None
    bdl = None
    if b"order" in f:
        bdl = _bundle_lines(f.get(b"bdl"))
        st = _text(f, "st")
        if st not in PART_STATUSES:
            raise MalformedEvent(f"unknown reservation status {st!r}")
        lines = []
        for raw in _json_list(f, "lines"):
            if not isinstance(raw, list) or len(raw) != 3:
                raise MalformedEvent(f"a line is not [sku, location, qty]: {raw!r}")
            lines.append(
                (_str(raw[0], "line sku"), _str(raw[1], "line location"), _int(raw[2], "qty"))
            )
        ofp = _text(f, "ofp") if b"ofp" in f else None
        part = (
            _text(f, "order"),
            _int(_text(f, "exp"), "exp"),
            lines,
            st,
            _text(f, "fp"),
            _text(f, "tok"),
            ofp,
        )
    transfer = None
    if b"tid" in f:
        st = _text(f, "st")
        if st not in TRANSFER_RANK:
            raise MalformedEvent(f"unknown transfer status {st!r}")
        transfer = (
            _text(f, "tid"),
            _text(f, "sku"),
            _text(f, "from"),
            _text(f, "to"),
            _int(_text(f, "qty"), "qty"),
            st,
            _text(f, "fp"),
            ts,
            ts,
        )
    limit = None
    if type_ == "limit":
        limit = (
            _str(_text(f, "sku"), "sku"),
            _int(_text(f, "n"), "n"),
            _int(_text(f, "w"), "w"),
            _int(_text(f, "v"), "v"),
            _int(_text(f, "gen"), "gen"),
            ts,
        )
    counted = None
    if b"cnt" in f:
        if part is None:
            raise MalformedEvent("counted units without a reservation part")
        entries = []
        for raw in _json_list(f, "cnt"):
            if not isinstance(raw, list) or len(raw) != 3:
                raise MalformedEvent(f"a count is not [sku, qty, generation]: {raw!r}")
            entries.append((_str(raw[0], "count sku"), _int(raw[1], "qty"), _int(raw[2], "gen")))
        cat = _int(_text(f, "cat"), "cat") if b"cat" in f else ts
        counted = (_str(_text(f, "cu"), "cu"), entries, cat)
    incoming = None
    preorders: tuple[PreorderRow, ...] = ()
    if type_ == "incoming":
        incoming, preorders = _incoming_change(f, ts, reason, rows)
    elif b"in" in f:
        raise MalformedEvent(f"an incoming record on a {type_!r} event")
    elif b"pre" in f:
        if part is None:
            raise MalformedEvent("pre-order lines without a reservation part")
        preorders = _part_preorders(f, part, ts)
    preorder_limit = None
    if b"pl" in f or (type_ == "policy" and reason == "preorder_limit"):
        if type_ != "policy":
            raise MalformedEvent(f"a pre-order limit on a {type_!r} event")
        preorder_limit = _preorder_limit(f, ts, rows)
    return Event(
        entry,
        type_,
        op,
        ts,
        ref,
        reason,
        rows,
        idem,
        part,
        transfer,
        bdl,
        None,
        limit,
        counted,
        incoming,
        preorders,
        preorder_limit,
    )


def available(on_hand: int, locked: int, safety_stock: int) -> int:
    return max(0, on_hand - locked - safety_stock)


def build(events: Iterable[Event], retention_ms: int) -> Batch:
    """Merge parsed events into one row per table key (the rules in the module doc)."""
    b = Batch()
    marks = b.marks
    for ev in events:
        b.events += 1
        sid = ev.entry.position
        ms, _, seq = ev.entry.id.partition("-")
        here = (int(ms), int(seq or 0), ev.op)
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
