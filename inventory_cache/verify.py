"""`inventory-cache verify`: compare Redis with PostgreSQL once the worker has caught up.

Compared, both ways (present on one side only is a difference too):

- every (sku, location): on_hand, locked, safety_stock; and every SKU's version (Redis's
  `v` against the highest version the ledger applied: equal once every event is written);
- the ledger itself: every (sku, location)'s on_hand and locked in Redis against the sums
  of its `movements`, and each row's `*_after` against the row before it plus its deltas,
  in version order (a fork or a lost row breaks that chain), each difference named with
  the SKU's slot group;
- every group's newest entry PostgreSQL committed, against Redis's stream
  (`inventory_cache.behind`), and the groups already marked behind;
- every active reservation part: its attempt token, expiry, lines and bundle lines; and
  the order index of every active order;
- every transfer in flight (`requested`, `in_transit`): sku, locations, qty, status;
- every stored policy's `safety_stock` against the one Redis applies;
- every bundle's definition and version (a deleted one: no components on either side),
  and the copy of it in the bundle SKU's stock hash (`bdef`) against the ledger's;
- every per-customer limit (units, window, version, generation), and what each customer
  holds of a limited SKU now: Redis's count against the ledger's `held` rows of the
  limit's generation within its window;
- incoming stock and pre-orders: every incoming record (open ones in the stock hash's
  `n:<ref>`, received and cancelled ones in `Keys.incoming_closed`) and its ref's index,
  every pre-order limit (`p:<loc>`), the units awaiting incoming stock (`q:<loc>`, the
  awaiting lines of active orders), and every SKU's book: each line of an active order
  still in it, and `#` (the highest sequence number ever given); an active part's
  pre-order lines (`pre`) are compared with its lines.

Comparing while traffic flows reports changes that are on their way as differences, so
`verify` first waits (up to `wait_s`) until the `ledger` group has no pending and no
unread entry left, and says so when it gave up waiting. Redis keys are found with SCAN, so
the whole keyspace of the prefix is walked: run it off-peak on large catalogues.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from inventory_cache import behind
from inventory_cache.engine import parse_stock, wall_clock_ms
from inventory_cache.incoming import BOOK_STATE_OF
from inventory_cache.keys import Keys
from inventory_cache.lag import backlog
from inventory_cache.settings import Settings
from persistence.events import text
from persistence.models import (
    PREORDER_OPEN,
    BundleDefinition,
    CustomerCount,
    CustomerLimit,
    IncomingStock,
    Movement,
    Policy,
    Preorder,
    PreorderPolicy,
    Reservation,
    ReservationLine,
    StockLevel,
    Transfer,
)
from persistence.sink import datetime_to_ms

CHUNK = 1000
IN_FLIGHT = ("requested", "in_transit")


@dataclass(frozen=True, slots=True)
class Difference:
    # stock, version, ledger, chain, behind, reservation, order_index, transfer, policy,
    # bundle, bundle_copy, limit, customer_count, incoming, incoming_index, preorder_limit,
    # preorders_awaiting, preorder, preorder_seq, backlog
    kind: str
    key: str
    redis: Any
    postgres: Any

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: redis={self.redis} postgres={self.postgres}"


def wait_caught_up(redis: Any, keys: Keys, wait_s: float) -> int:
    """Wait until the ledger group has nothing left; returns what is left at the end."""
    deadline = time.monotonic() + wait_s
    while True:
        left = backlog(redis, keys)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def _scan(redis: Any, keys: Keys, kind: str) -> Iterator[tuple[int, str, dict[bytes, bytes]]]:
    """(group, id, hash) of every `<prefix>:{g}:<kind>:<id>` hash, fetched in pipelines."""
    pattern = keys.key_pattern(kind)
    names: list[tuple[int, str, bytes]] = []

    def fetch() -> Iterator[tuple[int, str, dict[bytes, bytes]]]:
        pipe = redis.pipeline(transaction=False)
        for _, _, raw in names:
            pipe.hgetall(raw)
        for (g, ident, _), value in zip(names, pipe.execute(), strict=True):
            if value:
                yield g, ident, value

    for raw in redis.scan_iter(match=keys.scan_pattern(kind), count=CHUNK):
        m = pattern.match(text(raw))
        if m is None:
            continue
        names.append((int(m[1]), m[3], raw))
        if len(names) >= CHUNK:
            yield from fetch()
            names = []
    if names:
        yield from fetch()


def compare(redis: Any, engine: sa.Engine, settings: Settings) -> list[Difference]:
    keys = Keys(settings.redis_prefix, settings.slot_groups)
    diffs = _behind(redis, keys, engine)
    with engine.connect() as conn:
        diffs += _stock(redis, keys, conn)
        diffs += _reservations(redis, keys, conn)
        diffs += _transfers(redis, keys, conn)
        diffs += _policies(redis, keys, conn)
        diffs += _bundles(redis, keys, conn)
        diffs += _limits(redis, keys, conn, wall_clock_ms())
        diffs += _preorders(redis, keys, conn)
    return diffs


def _behind(redis: Any, keys: Keys, engine: sa.Engine) -> list[Difference]:
    found = behind.find(redis, keys, behind.load_marks(engine))
    for g, record in behind.marked(redis, keys).items():
        found.setdefault(g, str(record.get("reason")))
    return [
        Difference("behind", f"group {g}", reason, "ledger holds more")
        for g, reason in sorted(found.items())
    ]


def verify(
    redis: Any, engine: sa.Engine, settings: Settings, *, wait_s: float = 30.0
) -> list[Difference]:
    """Differences between Redis and PostgreSQL (empty when they agree)."""
    keys = Keys(settings.redis_prefix, settings.slot_groups)
    left = wait_caught_up(redis, keys, wait_s)
    diffs = compare(redis, engine, settings)
    if left:
        diffs.insert(0, Difference("backlog", "streams", left, "worker not caught up"))
    return diffs


def _stock(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    ours: dict[tuple[str, str], tuple[int, int, int]] = {}
    versions: dict[str, int] = {}
    for _, sku, raw in _scan(redis, keys, "s"):
        for loc, lv in parse_stock(sku, raw).items():
            ours[(sku, loc)] = (lv.on_hand, lv.locked, lv.safety_stock)
        if b"v" in raw:  # else only a bundle's copy of its definition (`bdef`): no stock
            versions[sku] = int(raw[b"v"])
    s = StockLevel
    theirs: dict[tuple[str, str], tuple[int, int, int]] = {}
    their_versions: dict[str, int] = defaultdict(int)
    q = sa.select(s.sku, s.location, s.on_hand, s.locked, s.safety_stock, s.version)
    for row in conn.execute(q):
        theirs[(row.sku, row.location)] = (row.on_hand, row.locked, row.safety_stock)
        their_versions[row.sku] = max(their_versions[row.sku], row.version)
    diffs = [
        Difference("stock", f"{sku}@{loc}", _levels(ours.get(k)), _levels(theirs.get(k)))
        for k in sorted(ours.keys() | theirs.keys())
        if ours.get(k) != theirs.get(k)
        for sku, loc in [k]
    ]
    diffs += [
        Difference("version", sku, versions.get(sku), their_versions.get(sku))
        for sku in sorted(versions.keys() | their_versions.keys())
        if versions.get(sku) != their_versions.get(sku)
    ]
    return diffs + _ledger(keys, conn, ours, versions)


def _ledger(
    keys: Keys,
    conn: sa.Connection,
    ours: dict[tuple[str, str], tuple[int, int, int]],
    versions: dict[str, int],
) -> list[Difference]:
    """Redis against the ledger's own history: sums, last version, and the chain."""
    m = Movement
    sums: dict[tuple[str, str], tuple[int, int]] = {}
    last: dict[str, int] = defaultdict(int)
    q = sa.select(
        m.sku,
        m.location,
        sa.func.sum(m.delta_on_hand),
        sa.func.sum(m.delta_locked),
        sa.func.max(m.version),
    ).group_by(m.sku, m.location)
    for sku, loc, doh, dl, ver in conn.execute(q):
        sums[(sku, loc)] = (int(doh), int(dl))
        last[sku] = max(last[sku], int(ver))
    diffs = []
    for sku, loc in sorted(ours.keys() | sums.keys()):
        mine = ours.get((sku, loc), (0, 0, 0))[:2]
        theirs = sums.get((sku, loc), (0, 0))
        if mine != theirs:
            diffs.append(
                Difference(
                    "ledger",
                    f"group {keys.group_of(sku)} {sku}@{loc}",
                    f"on_hand={mine[0]} locked={mine[1]}",
                    f"sum of movements: on_hand={theirs[0]} locked={theirs[1]}",
                )
            )
    diffs += [
        Difference(
            "ledger",
            f"group {keys.group_of(sku)} {sku}",
            f"v={versions.get(sku)}",
            f"last version in movements: {last.get(sku)}",
        )
        for sku in sorted(versions.keys() | last.keys())
        if versions.get(sku) != last.get(sku)
    ]
    rows = sa.select(
        m.sku,
        m.location,
        m.version,
        m.op_id,
        m.delta_on_hand,
        m.delta_locked,
        m.on_hand_after,
        m.locked_after,
        sa.func.lag(m.on_hand_after)
        .over(partition_by=(m.sku, m.location), order_by=m.version)
        .label("prev_oh"),
        sa.func.lag(m.locked_after)
        .over(partition_by=(m.sku, m.location), order_by=m.version)
        .label("prev_lk"),
    ).subquery()
    r = rows.c
    start_oh = sa.func.coalesce(r.prev_oh, 0)
    start_lk = sa.func.coalesce(r.prev_lk, 0)
    broken = sa.select(r.sku, r.location, r.version, r.op_id).where(
        sa.or_(
            r.on_hand_after != start_oh + r.delta_on_hand,
            r.locked_after != start_lk + r.delta_locked,
        )
    )
    diffs += [
        Difference(
            "chain",
            f"group {keys.group_of(row.sku)} {row.sku}@{row.location} v{row.version}",
            None,
            f"{row.op_id} does not follow the row before it",
        )
        for row in conn.execute(broken.order_by(r.sku, r.location, r.version))
    ]
    return diffs


def _levels(v: tuple[int, int, int] | None) -> str | None:
    if v is None:
        return None
    return f"on_hand={v[0]} locked={v[1]} safety_stock={v[2]}"


def _reservations(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    # (token, expires_at, lines) and, for a part with bundle lines, its `bdl`
    ours: dict[tuple[str, int], tuple[Any, ...]] = {}
    for g, order, raw in _scan(redis, keys, "r"):
        if raw.get(b"st") != b"active":
            continue
        lines = orjson.loads(raw[b"lines"])
        ours[(order, g)] = (
            raw[b"tok"].decode(),
            int(raw[b"exp"]),
            [list(x) for x in lines] if isinstance(lines, list) else [],
        ) + ((raw[b"bdl"].decode(),) if raw.get(b"bdl") else ())
        if raw.get(b"pre"):
            ours[(order, g)] += (("pre", [list(x) for x in orjson.loads(raw[b"pre"])]),)
    ln = ReservationLine
    theirs: dict[tuple[str, int], tuple[Any, ...]] = {}
    q = (
        sa.select(ln.order_id, ln.token, ln.sku, ln.location, ln.qty, ln.expires_at, ln.bundles)
        .where(ln.status == "active")
        .order_by(ln.order_id, ln.token, ln.position)
    )
    for row in conn.execute(q):
        key = (row.order_id, keys.group_of(row.sku))
        entry = theirs.setdefault(
            key,
            (row.token, datetime_to_ms(row.expires_at), [])
            + ((row.bundles,) if row.bundles else ()),
        )
        entry[2].append([row.sku, row.location, row.qty])
    # The parts' pre-order lines (a part may hold nothing else), in the order it took them.
    p = Preorder
    pq = (
        sa.select(p.order_id, p.token, p.sku, p.seq, p.location, p.qty, p.expected_at, p.expires_at)
        .where(p.status.in_(PREORDER_OPEN))
        .order_by(p.order_id, p.sku, p.seq)
    )
    pre: dict[tuple[str, int], list[list[Any]]] = defaultdict(list)
    for prow in conn.execute(pq):
        key = (prow.order_id, keys.group_of(prow.sku))
        if key not in theirs:
            exp = None if prow.expires_at is None else datetime_to_ms(prow.expires_at)
            theirs[key] = (prow.token, exp, [])
        pre[key].append(
            [prow.sku, prow.location, prow.qty, prow.seq, datetime_to_ms(prow.expected_at)]
        )
    for key, lines in pre.items():
        theirs[key] += (("pre", lines),)
    diffs = [
        Difference("reservation", f"{order} (group {g})", ours.get(k), theirs.get(k))
        for k in sorted(ours.keys() | theirs.keys())
        if ours.get(k) != theirs.get(k)
        for order, g in [k]
    ]
    orders = sorted({order for order, _ in theirs})
    pipe = redis.pipeline(transaction=False)
    for order in orders:
        pipe.exists(keys.order_index(order))
    for order, exists in zip(orders, pipe.execute(), strict=True):
        if not exists:
            diffs.append(Difference("order_index", order, None, "active"))
    return diffs


def _transfers(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    ours: dict[str, tuple[str, str, str, int, str]] = {}
    for _, tid, raw in _scan(redis, keys, "t"):
        f = {k.decode(): v.decode() for k, v in raw.items()}
        if f.get("st") in IN_FLIGHT:
            ours[tid] = (f["sku"], f["from"], f["to"], int(f["qty"]), f["st"])
    t = Transfer
    theirs = {
        row.transfer_id: (row.sku, row.from_location, row.to_location, row.qty, row.status)
        for row in conn.execute(
            sa.select(t.transfer_id, t.sku, t.from_location, t.to_location, t.qty, t.status).where(
                t.status.in_(IN_FLIGHT)
            )
        )
    }
    return [
        Difference("transfer", tid, ours.get(tid), theirs.get(tid))
        for tid in sorted(ours.keys() | theirs.keys())
        if ours.get(tid) != theirs.get(tid)
    ]


def _policies(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    """Each stored policy's safety_stock against the one Redis applies (0 when unset)."""
    p = Policy
    rows = list(conn.execute(sa.select(p.sku, p.location, p.safety_stock).order_by(p.sku)))
    diffs: list[Difference] = []
    for i in range(0, len(rows), CHUNK):
        chunk = rows[i : i + CHUNK]
        pipe = redis.pipeline(transaction=False)
        for row in chunk:
            pipe.hget(keys.stock(row.sku), f"s:{row.location}")
        for row, raw in zip(chunk, pipe.execute(), strict=True):
            ours = int(raw or 0)
            if ours != row.safety_stock:
                key = f"{row.sku}@{row.location}"
                diffs.append(Difference("policy", key, ours, row.safety_stock))
    return diffs


def _bundles(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    ours: dict[str, tuple[Any, int]] = {}
    for _, sku, raw in _scan(redis, keys, "b"):
        comps = raw.get(b"c") or b""
        ours[sku] = (orjson.loads(comps) if comps else None, int(raw.get(b"v", 0)))
    b = BundleDefinition
    theirs = {
        row.sku: (row.components or None, int(row.version))
        for row in conn.execute(sa.select(b.sku, b.components, b.version))
    }
    skus = sorted(ours.keys() | theirs.keys())
    diffs = [
        Difference("bundle", sku, ours.get(sku), theirs.get(sku))
        for sku in skus
        if ours.get(sku) != theirs.get(sku)
    ]
    # The copy in the bundle SKU's stock hash, which reads and reservations use.
    pipe = redis.pipeline(transaction=False)
    for sku in skus:
        pipe.hget(keys.stock(sku), "bdef")
    for sku, copy in zip(skus, pipe.execute(), strict=True):
        copied = orjson.loads(copy) if copy else None
        defined = theirs[sku][0] if sku in theirs else None
        if copied != defined:
            diffs.append(Difference("bundle_copy", sku, copied, defined))
    return diffs


def _limits(redis: Any, keys: Keys, conn: sa.Connection, now: int) -> list[Difference]:
    ours: dict[str, tuple[int, int, int, int]] = {}
    for _, sku, raw in _scan(redis, keys, "cl"):
        n, w, v, gen = (int(raw.get(f, 0)) for f in (b"n", b"w", b"v", b"gen"))
        ours[sku] = (n, w, v, gen)
    lim = CustomerLimit
    theirs = {
        row.sku: (row.per_customer, row.window_seconds, row.version, row.generation)
        for row in conn.execute(
            sa.select(lim.sku, lim.per_customer, lim.window_seconds, lim.version, lim.generation)
        )
    }
    diffs = [
        Difference("limit", sku, ours.get(sku), theirs.get(sku))
        for sku in sorted(ours.keys() | theirs.keys())
        if ours.get(sku) != theirs.get(sku)
    ]
    limited = {sku: t for sku, t in theirs.items() if t[0] > 0}
    held: dict[tuple[str, str], int] = defaultdict(int)
    c = CustomerCount
    q = (
        sa.select(c.sku, c.customer_id, c.qty, c.counted_at, c.generation)
        .where(c.status == "held")
        .order_by(c.sku, c.customer_id)
    )
    for row in conn.execute(q):
        t = limited.get(row.sku)
        if t is None or row.generation != t[3]:
            continue
        if t[1] and datetime_to_ms(row.counted_at) <= now - t[1] * 1000:
            continue
        held[(row.sku, row.customer_id)] += row.qty
    counts = _counts(redis, keys, limited, now)
    diffs += [
        Difference("customer_count", f"{sku} customer {cu}", counts.get(k), held.get(k))
        for k in sorted(counts.keys() | held.keys())
        if counts.get(k) != held.get(k)
        for sku, cu in [k]
    ]
    return diffs


def _counts(
    redis: Any, keys: Keys, limited: dict[str, tuple[int, int, int, int]], now: int
) -> dict[tuple[str, str], int]:
    """Units each customer holds of each limited SKU in Redis (lua/includes/limitOf.lua's rules)."""
    names: list[tuple[str, str, bytes]] = []
    for raw in redis.scan_iter(match=keys.scan_pattern("cc"), count=CHUNK):
        found = keys.customer_count_of(text(raw))
        if found is None:
            continue
        sku, customer = found
        if sku in limited:
            names.append((sku, customer, raw))
    out: dict[tuple[str, str], int] = {}
    for i in range(0, len(names), CHUNK):
        chunk = names[i : i + CHUNK]
        pipe = redis.pipeline(transaction=False)
        for _, _, raw in chunk:
            pipe.zrange(raw, 0, -1, withscores=True)
        for (sku, customer, _), members in zip(chunk, pipe.execute(), strict=True):
            _, window, _, gen = limited[sku]
            scores = {text(m): s for m, s in members}
            if scores.get("@") != -gen:
                continue
            units = sum(
                int(m.split(":", 1)[0])
                for m, s in scores.items()
                if s > 0 and (not window or s > now - window * 1000)
            )
            if units:
                out[(sku, customer)] = units
    return out


def _number(raw: bytes) -> int | str:
    try:
        return int(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _record(raw: bytes, numbers: tuple[int, ...], size: int) -> tuple[Any, ...] | str:
    """A JSON array of `size` values from Redis as a tuple (`numbers` its integer
    positions), or the text itself when it is not one (a difference all the same)."""
    try:
        value = orjson.loads(raw)
        if isinstance(value, list) and len(value) == size:
            return tuple(int(x) if i in numbers else x for i, x in enumerate(value))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    return raw.decode(errors="replace")


def _preorders(redis: Any, keys: Keys, conn: sa.Connection) -> list[Difference]:
    """Incoming records and their index, pre-order limits, awaiting units and books."""
    # ref -> (sku, location, qty, expected_at, status, received_qty)
    ours_in: dict[str, Any] = {}
    ours_limit: dict[tuple[str, str], Any] = {}
    ours_q: dict[tuple[str, str], Any] = {}
    for _, sku, raw in _scan(redis, keys, "s"):
        for k, v in raw.items():
            field = k.decode()
            kind, name = field[:2], field[2:]
            if kind == "p:":
                ours_limit[(sku, name)] = _number(v)
            elif kind == "q:":
                ours_q[(sku, name)] = _number(v)
            elif kind == "n:":
                record = _record(v, (1, 2), 3)
                ours_in[name] = (sku, *record, "open", 0) if isinstance(record, tuple) else record
    for _, sku, raw in _scan(redis, keys, "nc"):
        for k, v in raw.items():
            record = _record(v, (1, 2, 4), 5)
            ours_in[k.decode()] = (sku, *record) if isinstance(record, tuple) else record
    ours_book: dict[tuple[str, int], Any] = {}
    ours_top: dict[str, Any] = {}
    for _, sku, raw in _scan(redis, keys, "pq"):
        for k, v in raw.items():
            if k == b"#":
                ours_top[sku] = _number(v)
            else:
                ours_book[(sku, int(k))] = _record(v, (3, 4), 6)

    i = IncomingStock
    theirs_in = {
        row.ref: (
            row.sku,
            row.location,
            row.qty,
            datetime_to_ms(row.expected_at),
            row.status,
            row.received_qty if row.status != "open" else 0,
        )
        for row in conn.execute(
            sa.select(i.ref, i.sku, i.location, i.qty, i.expected_at, i.status, i.received_qty)
        )
    }
    pol = PreorderPolicy
    theirs_limit = {
        (row.sku, row.location): row.preorder_limit
        for row in conn.execute(
            sa.select(pol.sku, pol.location, pol.preorder_limit).where(pol.preorder_limit > 0)
        )
    }
    p, r = Preorder, Reservation
    theirs_top = {
        sku: int(top)
        for sku, top in conn.execute(sa.select(p.sku, sa.func.max(p.seq)).group_by(p.sku))
    }
    theirs_book: dict[tuple[str, int], tuple[str, str, str, int, int, str]] = {}
    theirs_q: dict[tuple[str, str], int] = defaultdict(int)
    q = (
        sa.select(p.sku, p.seq, p.order_id, p.token, p.location, p.qty, p.expected_at, p.status)
        .join(r, r.order_id == p.order_id)
        .where(p.status.in_(PREORDER_OPEN), r.status == "active")
    )
    for row in conn.execute(q):
        state = BOOK_STATE_OF[row.status]
        at = datetime_to_ms(row.expected_at)
        theirs_book[(row.sku, row.seq)] = (
            row.order_id,
            row.token,
            row.location,
            row.qty,
            at,
            state,
        )
        if state == "a":
            theirs_q[(row.sku, row.location)] += row.qty

    def named(ref: str) -> str:
        record = theirs_in.get(ref) or ours_in.get(ref)
        return f"{record[0] if record else '?'} {ref}"

    diffs = [
        Difference("incoming", named(ref), ours_in.get(ref), theirs_in.get(ref))
        for ref in sorted(ours_in.keys() | theirs_in.keys())
        if ours_in.get(ref) != theirs_in.get(ref)
    ]
    refs = sorted(theirs_in)
    for n in range(0, len(refs), CHUNK):
        pipe = redis.pipeline(transaction=False)
        for ref in refs[n : n + CHUNK]:
            pipe.get(keys.incoming_index(ref))
        for ref, raw in zip(refs[n : n + CHUNK], pipe.execute(), strict=True):
            found = raw.decode() if raw is not None else None
            if found != theirs_in[ref][0]:
                diffs.append(Difference("incoming_index", named(ref), found, theirs_in[ref][0]))
    for kind, mine, theirs in (
        ("preorder_limit", ours_limit, theirs_limit),
        ("preorders_awaiting", ours_q, theirs_q),
    ):
        diffs += [
            Difference(kind, f"{sku}@{loc}", mine.get(k), theirs.get(k))
            for k in sorted(mine.keys() | theirs.keys())
            if mine.get(k) != theirs.get(k)
            for sku, loc in [k]
        ]
    diffs += [
        Difference("preorder", f"{sku} #{seq}", ours_book.get(k), theirs_book.get(k))
        for k in sorted(ours_book.keys() | theirs_book.keys())
        if ours_book.get(k) != theirs_book.get(k)
        for sku, seq in [k]
    ]
    diffs += [
        Difference("preorder_seq", sku, ours_top.get(sku), theirs_top.get(sku))
        for sku in sorted(ours_top.keys() | theirs_top.keys())
        if ours_top.get(sku) != theirs_top.get(sku)
    ]
    return diffs


def run_verify(*, wait_s: float = 30.0) -> int:
    """`inventory-cache verify`: differences on standard output; 1 if any, else 0."""
    import sys

    from inventory_cache.connection import make_sync_redis
    from inventory_cache.settings import get_settings
    from persistence.db import database_url, make_engine

    settings = get_settings()
    engine = make_engine(database_url(settings.database_url))
    try:
        diffs = verify(make_sync_redis(settings), engine, settings, wait_s=wait_s)
    finally:
        engine.dispose()
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s)", file=sys.stderr)
    return 1 if diffs else 0
