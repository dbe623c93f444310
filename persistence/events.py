"""The event-stream contract: what a stream entry holds and how every reader decodes it.

Every change the Lua scripts make is XADDed to its slot group's stream `<prefix>:{g}:ev`
in the same call (format in ARCHITECTURE.md, "Events"). This module is the one place that
knows that format; the write-behind worker, the merge into table rows
(`persistence.ledger`), the change feed, the alerts, reconciliation, the behind-the-ledger
check and the lag measurement all read entries through it:

- `StreamId`: a stream entry id `<ms>-<seq>`, parsed, compared and written back;
- `Entry`, `Row` (with `available`), `Event` and the record types an event carries;
- `parse`: the fast parser (`parse_fast`, strictly typed, the common case), falling back
  to the checked one (`parse_checked`, every field checked and each failure named) for
  anything unusual; `MalformedEvent` when an entry can never be applied;
- `fields_text`, `read_rows`: the loose decoding of readers that only show or compare an
  entry's levels (the feed, alerts, reconciliation), which skip what they cannot read
  rather than refuse it;
- `Lag`, `stream_backlog`, `stream_lag`, `total_lag`: how far a consumer group is behind,
  computed from the stream's own replies (`XINFO GROUPS`, `XPENDING`, `XRANGE`), so the
  API, the worker, `verify` and `warmup` agree on one figure (`inventory_cache.lag` asks
  Redis for them).

It lives in `persistence` because `persistence.ledger` needs the parsers and
`persistence` never imports `inventory_cache`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

PART_STATUSES = frozenset({"active", "released", "cancelled", "expired", "shipped"})
TRANSFER_RANK = {"requested": 0, "in_transit": 1, "received": 2, "cancelled": 2}
INCOMING_STATUSES = frozenset({"open", "received", "cancelled"})
INCOMING_REASONS = frozenset(
    {"incoming_create", "incoming_change", "incoming_receive", "incoming_cancel"}
)
# The states an incoming event's `pre` moves lines to.
PREORDER_MOVES = frozenset({"locked", "uncovered"})


class MalformedEvent(ValueError):
    """A stream entry that can never be applied; the worker dead-letters it."""


def text(value: Any) -> str:
    """A Redis reply value as text, whether the client decoded it or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


# Builds a NamedTuple (`StreamId`, `Row`) on the worker's path without the Python call of
# its generated constructor.
_new_tuple = tuple.__new__


class StreamId(NamedTuple):
    """A stream entry id `<ms>-<seq>`: ordered as Redis orders entries."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, raw: bytes | str) -> StreamId:
        """`<ms>-<seq>`, or `<ms>` alone (Redis reads it as `<ms>-0`)."""
        ms, _, seq = (raw.decode() if isinstance(raw, bytes) else raw).partition("-")
        return _new_tuple(cls, (int(ms), int(seq or 0)))

    def next(self) -> StreamId:
        """The smallest id after this one."""
        return StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def available(on_hand: int, locked: int, safety_stock: int) -> int:
    """What can be sold: never negative, even when locks exceed the stock (an oversell)."""
    return max(0, on_hand - locked - safety_stock)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: the group of its stream, its id (`ms-seq`) and raw fields."""

    group: int
    id: str
    fields: Mapping[bytes, bytes]

    @property
    def position(self) -> str:
        """The entry as the change feed names it: `<ms>-<group>-<seq>`. Split as text, not
        parsed: the ledger merge names every entry it writes this way."""
        ms, _, seq = self.id.partition("-")
        return f"{ms}-{self.group}-{seq}"


class Row(NamedTuple):
    """One element of an event's `rows`: a (sku, location)'s change and its levels after."""

    sku: str
    location: str
    d_on_hand: int
    d_locked: int
    on_hand: int
    locked: int
    safety_stock: int
    version: int

    @property
    def available(self) -> int:
        return available(self.on_hand, self.locked, self.safety_stock)


# (bundle sku, components JSON | None when deleted, version, ts_ms)
BundleRow = tuple[str, str | None, int, int]
# (transfer_id, sku, from, to, qty, status, fingerprint, first_ts_ms, last_ts_ms)
TransferRow = tuple[str, str, str, str, int, str, str, int, int]
# (sku, per_customer, window_seconds, version, generation, ts_ms)
LimitRow = tuple[str, int, int, int, int, int]
# (ref, sku, location, qty, expected_ms, status, received_qty, version, ts_ms)
IncomingRow = tuple[str, str, str, int, int, str, int, int, int]
# (sku, location, preorder_limit, version, ts_ms)
PreorderLimitRow = tuple[str, str, int, int, int]
# (sku, seq, order_id, token, location, qty, expected_ms, status, reserved_ms | None,
#  updated_ms, part fingerprint | None, part expires_ms | None)
PreorderRow = tuple[str, int, str, str, str, int, int, str, int | None, int, str | None, int | None]
# What a part counted against per-customer limits: (customer, [(sku, qty, gen)], counted_ms)
Counted = tuple[str, list[tuple[str, int, int]], int]


def _field(fields: Mapping[bytes, bytes], name: str) -> str:
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


@dataclass(slots=True)
class Event:
    """One parsed entry: the ledger rows and the record it carries, validated.

    Not frozen, though nothing changes it: a frozen dataclass sets each of its 17 fields
    through `object.__setattr__`, which was a quarter of the worker's parsing of an event.
    """

    entry: Entry
    type: str
    op: str
    ts: int
    ref: str
    reason: str
    rows: list[Row]
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
    sku = _field(f, "bundle")
    comps = _field(f, "comps")
    version = _int(_field(f, "v"), "v")
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
    f: Mapping[bytes, bytes], ts: int, reason: str, rows: list[Row]
) -> tuple[IncomingRow, tuple[PreorderRow, ...]]:
    """An 'incoming' event's record (`in`) and the pre-order lines it moved (`pre`)."""
    ref = _field(f, "ref")
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


def _preorder_limit(f: Mapping[bytes, bytes], ts: int, rows: list[Row]) -> PreorderLimitRow:
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


def parse_fast(entry: Entry) -> Event:
    """The common case, strictly typed; anything else raises and goes to `parse_checked`."""
    f = entry.fields
    type_, op, ts = f[b"t"].decode(), f[b"op"].decode(), int(f[b"ts"])
    raw = f.get(b"ref")
    ref = op if raw is None else raw.decode()
    raw = f.get(b"reason")
    reason = type_ if raw is None else raw.decode()
    rows = []
    for sku, loc, doh, dl, oh, lk, ss, ver in orjson.loads(f[b"rows"]):
        rows.append(
            _new_tuple(
                Row,
                (
                    _fast_str(sku),
                    _fast_str(loc),
                    _fast_int(doh),
                    _fast_int(dl),
                    _fast_int(oh),
                    _fast_int(lk),
                    _fast_int(ss),
                    _fast_int(ver),
                ),
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
        return parse_fast(entry)
    except Exception:
        return parse_checked(entry)


def parse_checked(entry: Entry) -> Event:
    """Every field checked, each failure named (also accepts integers sent as text)."""
    f = entry.fields
    type_, op = _field(f, "t"), _field(f, "op")
    ts = _int(_field(f, "ts"), "ts")
    ref = _field(f, "ref") if b"ref" in f else op
    reason = _field(f, "reason") if b"reason" in f else type_
    rows = []
    for raw in _json_list(f, "rows"):
        if not isinstance(raw, list) or len(raw) != 8:
            raise MalformedEvent(f"a row is not [sku, location, 6 integers]: {raw!r}")
        sku, loc = _str(raw[0], "row sku"), _str(raw[1], "row location")
        nums = [_int(x, "row value") for x in raw[2:]]
        rows.append(Row(sku, loc, nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]))
    if type_ == "bundle":
        return Event(
            entry, type_, op, ts, ref, reason, rows, None, None, None, bundle=_bundle_change(f, ts)
        )
    if not rows and type_ != "limit":
        raise MalformedEvent("an event without rows changes nothing")
    idem = None
    if b"idem" in f:
        idem = (_field(f, "idem"), _field(f, "fp"))
    part = None
    bdl = None
    if b"order" in f:
        bdl = _bundle_lines(f.get(b"bdl"))
        st = _field(f, "st")
        if st not in PART_STATUSES:
            raise MalformedEvent(f"unknown reservation status {st!r}")
        lines = []
        for raw in _json_list(f, "lines"):
            if not isinstance(raw, list) or len(raw) != 3:
                raise MalformedEvent(f"a line is not [sku, location, qty]: {raw!r}")
            lines.append(
                (_str(raw[0], "line sku"), _str(raw[1], "line location"), _int(raw[2], "qty"))
            )
        ofp = _field(f, "ofp") if b"ofp" in f else None
        part = (
            _field(f, "order"),
            _int(_field(f, "exp"), "exp"),
            lines,
            st,
            _field(f, "fp"),
            _field(f, "tok"),
            ofp,
        )
    transfer = None
    if b"tid" in f:
        st = _field(f, "st")
        if st not in TRANSFER_RANK:
            raise MalformedEvent(f"unknown transfer status {st!r}")
        transfer = (
            _field(f, "tid"),
            _field(f, "sku"),
            _field(f, "from"),
            _field(f, "to"),
            _int(_field(f, "qty"), "qty"),
            st,
            _field(f, "fp"),
            ts,
            ts,
        )
    limit = None
    if type_ == "limit":
        limit = (
            _str(_field(f, "sku"), "sku"),
            _int(_field(f, "n"), "n"),
            _int(_field(f, "w"), "w"),
            _int(_field(f, "v"), "v"),
            _int(_field(f, "gen"), "gen"),
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
        cat = _int(_field(f, "cat"), "cat") if b"cat" in f else ts
        counted = (_str(_field(f, "cu"), "cu"), entries, cat)
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


def op_of(raw: Mapping[bytes, bytes]) -> str:
    """An entry's operation id (`op`), '' when it has none."""
    return raw.get(b"op", b"").decode()


def fields_text(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """An entry's fields as text, for readers that show them rather than apply them."""
    return {k.decode(): v.decode() for k, v in raw.items()}


def read_rows(raw: bytes | str | None) -> list[Row]:
    """An entry's `rows` for readers that only show or compare levels (the feed, alerts,
    reconciliation): integers sent as text are accepted, an absent field is no rows. A
    row that is not 8 values raises (TypeError, ValueError): the caller skips the entry,
    where the worker dead-letters it."""
    value = [] if raw is None else orjson.loads(raw)
    if not isinstance(value, list):  # cjson encodes an empty array as {}
        return []
    return [Row(r[0], r[1], *(int(x) for x in r[2:])) for r in value]


# ---------------------------------------------------------------------------- lag
@dataclass(frozen=True, slots=True)
class Lag:
    """What a consumer group has not acknowledged: entries, and the age of the oldest."""

    entries: int
    seconds: float


def group_info(groups: Any, name: str) -> dict[str, Any] | None:
    """One group's `XINFO GROUPS` entry, whether the reply is parsed (a list of maps) or
    raw (flat name/value lists, RESP2); None when the stream has no such group."""
    for info in groups or []:
        pairs = info.items() if isinstance(info, dict) else zip(info[::2], info[1::2], strict=True)
        fields = {text(k): v for k, v in pairs}
        if text(fields.get("name", "")) == name:
            return fields
    return None


def unacknowledged(info: Mapping[str, Any], *, unknown_lag: int) -> int:
    """Entries delivered but pending plus entries not delivered yet. Redis does not know
    the second (`lag` is nil) after deletions in the stream: `unknown_lag` stands for it."""
    lag = info.get("lag")
    return int(info["pending"]) + (int(lag) if lag is not None else unknown_lag)


def stream_backlog(groups: Any, length: Any, name: str) -> int:
    """Entries of one stream that group `name` has not acknowledged, from its `XINFO
    GROUPS` and `XLEN` replies: all of them while the group does not exist (no worker
    has read the stream yet), and all of them again when Redis cannot tell the undelivered
    count. The cautious figure of `verify` and `warmup`, which wait for it to be 0."""
    if isinstance(length, BaseException) or not length:
        return 0
    info = None if isinstance(groups, BaseException) else group_info(groups, name)
    if info is None:
        return int(length)
    return unacknowledged(info, unknown_lag=int(length))


def lag_reads(stream: str, info: Mapping[str, Any], name: str) -> list[tuple[Any, ...]]:
    """The commands `stream_lag` needs besides `XINFO GROUPS`: the oldest pending entry
    (`XPENDING` summary) while some are pending, and the first entry after the last one
    delivered while Redis does not say that none is left."""
    out: list[tuple[Any, ...]] = []
    if int(info["pending"]):
        out.append(("XPENDING", stream, name))
    if info.get("lag") != 0:
        last = text(info["last-delivered-id"])
        out.append(("XRANGE", stream, "(" + last, "+", "COUNT", 1))
    return out


def first_pending(reply: Any) -> StreamId | None:
    """The oldest pending id of an `XPENDING` summary, parsed (a map) or raw (a list)."""
    if not reply:
        return None
    first = reply.get("min") if isinstance(reply, dict) else reply[1]
    return None if first is None else StreamId.parse(first)


def stream_lag(info: Mapping[str, Any], pending: Any, following: Any) -> tuple[int, int | None]:
    """One stream's share of a group's lag: (entries not acknowledged, ms of the oldest
    of them or None). `pending` and `following` are the replies to `lag_reads`' XPENDING
    and XRANGE, None where not asked."""
    oldest: int | None = None
    if (first := first_pending(pending)) is not None:
        oldest = first.ms
    undelivered = bool(following)
    if undelivered:
        ms = StreamId.parse(following[0][0]).ms
        oldest = ms if oldest is None else min(oldest, ms)
    return unacknowledged(info, unknown_lag=int(undelivered)), oldest


def total_lag(parts: Iterable[tuple[int, int | None]], now_ms: int) -> Lag:
    """The lag over streams (`stream_lag` of each): their entries, and the age of the
    oldest entry of all at `now_ms`."""
    entries, oldest = 0, now_ms
    for count, ms in parts:
        entries += count
        if ms is not None:
            oldest = min(oldest, ms)
    return Lag(entries, max(0.0, (now_ms - oldest) / 1000) if entries else 0.0)
