"""`inventory-cache warmup`: rebuild Redis from PostgreSQL, then mark every group ready.

An empty or flushed Redis has no readiness markers, so every script refuses writes with
`not_ready` rather than report zero stock (docs/contract.md). Warmup restores, from what the
worker committed:

- every SKU's stock hash (`restore_stock-1.lua`, per SKU; the version is the highest
  PostgreSQL holds, so the SKU's next change continues the sequence);
- every bundle's definition (`restore_bundle-2.lua`, deleted ones as empty, at their
  version);
- the reservation parts of orders that are active, or settled within the idempotency
  retention (`restore_part-2.lua`), with their order index (`restore_record-1.lua`), so
  that a retried reservation replays instead of locking twice and a retried cancel or
  ship answers as the first did;
- transfers in flight or finished within the retention, with their index;
- the idempotency records of movements still within their retention (`restore_op-1.lua`);
- every SKU's per-customer limit (`restore_record-1.lua`; a removed one too, so its version
  sequence continues) and each customer's count of a limited SKU: the units its `held`
  rows of the limit's generation hold within the window (`restore_count-1.lua`);
- the pre-order state of every SKU that has some (`restore_book-2.lua`, after its stock
  hash, and only where Redis holds the SKU at the version PostgreSQL has): `p:<loc>` its
  pre-order limits (0 omitted), `n:<ref>` its open incoming records, `q:<loc>` the units
  of awaiting pre-order lines of active orders, and its book (`Keys.preorders`) of the
  lines of active orders still in it, `#` the highest sequence number ever given (finished
  lines too, so numbers never repeat); the same call gives each restored part its
  pre-order lines (`pre`). A part may hold pre-order lines only: those parts are rebuilt
  from `preorders` alone. Then the closed incoming records (`restore_record-1.lua` on
  `Keys.incoming_closed`) and every ref's index (`Keys.incoming_index`, set if absent);
- the API keys' mirror (`apikeys.rebuild_mirror`), so that authentication needs no
  PostgreSQL; this step runs even when `--if-empty` finds Redis warm;

then sets the markers (`mark_ready-1.lua`). Every restore script keeps what Redis
already holds (a SKU at the same or a newer version, an existing part or record), so
warmup is safe to repeat and never overwrites a change made since the flush. Expiries
are restored as absolute times: a record that would have expired by now is skipped.

A group *behind* the ledger (`inventory_cache.behind`: Redis lost changes PostgreSQL
holds) is healed, not merged: warmup first checks every group (so it finds a gap itself),
waits until the worker has written what the group's stream still holds (forks it
dead-letters), then deletes the group's stock state (levels, parts, transfers, order and
transfer indexes, idempotency records) and restores all of it from PostgreSQL. Keeping a
stale copy would be wrong both ways: a SKU whose version Redis reused looks "as new" and
would keep its old levels, while its lost reservations came back without their locks.

Everything written is what the worker had committed: events that Redis accepted but the
worker had not written yet when Redis lost them are lost with them (docs/durability.md promises
no loss only of what Redis still holds); run with AOF to keep that window small.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress

from inventory_cache import behind
from inventory_cache.apikeys import rebuild_mirror
from inventory_cache.engine import wall_clock_ms
from inventory_cache.incoming import BOOK_STATE_OF
from inventory_cache.keys import Keys
from inventory_cache.lag import unwritten
from inventory_cache.redis_policy import require_safe_policy
from inventory_cache.script_calls import (
    Call,
    mark_ready,
    restore_book,
    restore_bundle,
    restore_count,
    restore_op,
    restore_part,
    restore_record,
    restore_stock,
)
from inventory_cache.script_exec import SyncScripts
from inventory_cache.scripts import scripts_for
from inventory_cache.settings import Settings
from persistence.models import (
    PREORDER_OPEN,
    BundleDefinition,
    CustomerCount,
    CustomerLimit,
    IdempotencyRecord,
    IncomingStock,
    Preorder,
    PreorderPolicy,
    Reservation,
    ReservationLine,
    StockLevel,
    Transfer,
)
from persistence.sink import datetime_to_ms, ms_to_datetime

CHUNK = 500
# A windowed count outlives its newest entry by the window plus this margin, as
# `LIMIT_EXPIRY_MARGIN_MS` in lua/includes/limitTake.lua.
LIMIT_EXPIRY_MARGIN_MS = 60_000


@dataclass
class WarmupReport:
    skus: int = 0
    bundles: int = 0
    reservations: int = 0
    parts: int = 0
    transfers: int = 0
    idempotency_records: int = 0
    limits: int = 0
    customer_counts: int = 0
    preorder_books: int = 0
    incoming_records: int = 0
    kept: int = 0
    skipped: bool = False
    groups: int = 0
    healed: list[int] = field(default_factory=list)
    api_keys: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Runner:
    """Sends script calls in pipelines of CHUNK (`SyncScripts`: NOSCRIPT reloads, errors
    raised), counting the records Redis kept as newer than PostgreSQL's."""

    scripts: SyncScripts
    report: WarmupReport
    advance: Callable[[int], None]
    pending: list[Call] = field(default_factory=list)

    @property
    def redis(self) -> Any:
        return self.scripts.redis

    def add(self, call: Call) -> None:
        self.pending.append(call)
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        calls, self.pending = self.pending, []
        if not calls:
            return
        for reply in self.scripts.run_many(calls):
            if reply.get("kept"):
                self.report.kept += 1
        self.advance(len(calls))


class WarmupBlocked(RuntimeError):
    """A behind group still has events the worker has not written: healing it now would
    drop them."""


def _wait_written(redis: Any, keys: Keys, groups: Sequence[int], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while left := unwritten(redis, keys, groups):
        if time.monotonic() >= deadline:
            detail = ", ".join(f"group {g}: {n}" for g, n in sorted(left.items()))
            raise WarmupBlocked(
                f"events not yet written to PostgreSQL ({detail}); run the worker, then "
                "warmup again"
            )
        time.sleep(0.2)


def is_warm(redis: Any, keys: Keys) -> bool:
    """True when every group carries its readiness marker."""
    pipe = redis.pipeline(transaction=False)
    for g in keys.all_groups():
        pipe.exists(keys.ready(g))
    return all(pipe.execute())


def warmup(
    redis: Any,
    engine: sa.Engine,
    settings: Settings,
    *,
    now_ms: int | None = None,
    if_needed: bool = False,
    progress: bool | None = None,
    drain_wait_s: float = 60.0,
) -> WarmupReport:
    """Rebuild Redis from PostgreSQL, heal the groups behind it, then mark every group ready.

    Args:
        now_ms: the present, for the retention windows (default: the wall clock).
        if_needed: do nothing when every group is already marked ready (and none is behind).
        progress: show a progress bar on standard error (default: when it is a terminal).
        drain_wait_s: how long to wait for the worker to write what a behind group's
            stream still holds; then `WarmupBlocked`.
    """
    require_safe_policy(redis)
    keys = Keys(settings.redis_prefix, settings.slot_groups)
    report = WarmupReport(groups=settings.slot_groups)
    behind.check(redis, engine, keys)
    report.api_keys = rebuild_mirror(redis, keys, engine)
    if if_needed and is_warm(redis, keys):
        report.skipped = True
        return report
    heal = sorted(behind.marked(redis, keys))
    marks: dict[int, behind.Mark] = {}
    if heal:
        _wait_written(redis, keys, heal, drain_wait_s)
        marks = behind.load_marks(engine)
        behind.clear_state(redis, keys, heal)
    now = wall_clock_ms() if now_ms is None else now_ms
    retention = settings.finished_retention_seconds * 1000
    cutoff = ms_to_datetime(now - retention)
    scripts = SyncScripts(redis, scripts_for(redis))
    show = sys.stderr.isatty() if progress is None else progress
    with (
        engine.connect() as conn,
        Progress(console=Console(stderr=True), disable=not show, transient=True) as bar,
    ):
        total = _count(conn, cutoff)
        task = bar.add_task("warmup", total=total)
        run = _Runner(scripts, report, lambda n: bar.advance(task, n))
        _restore_stock(conn, keys, run)
        _restore_bundles(conn, keys, run)
        pre_parts = _restore_reservations(conn, keys, run, cutoff, now, retention)
        _restore_preorders(conn, keys, run, pre_parts)
        _restore_transfers(conn, keys, run, cutoff, now, retention)
        _restore_idempotency(conn, keys, run, now)
        _restore_limits(conn, keys, run, now)
        run.flush()
    behind.healed(redis, keys, marks, heal)
    report.healed = heal
    for g in keys.all_groups():
        run.add(mark_ready(ready=keys.ready(g), at=now))
    run.flush()
    return report


def _count(conn: sa.Connection, cutoff: Any) -> int:
    s, r, t, i = StockLevel, Reservation, Transfer, IdempotencyRecord
    return sum(
        conn.execute(q).scalar_one()
        for q in (
            sa.select(sa.func.count()).select_from(CustomerLimit),
            sa.select(sa.func.count(sa.distinct(s.sku))),
            sa.select(sa.func.count()).select_from(BundleDefinition),
            sa.select(sa.func.count()).select_from(r).where(_live_reservation(cutoff)),
            sa.select(sa.func.count()).select_from(t).where(_live_transfer(cutoff)),
            sa.select(sa.func.count()).select_from(i).where(i.expires_at > cutoff),
        )
    )


def _live_reservation(cutoff: Any) -> sa.ColumnElement[bool]:
    r = Reservation
    return sa.and_(r.status != "released", sa.or_(r.status == "active", r.updated_at >= cutoff))


def _live_transfer(cutoff: Any) -> sa.ColumnElement[bool]:
    t = Transfer
    return sa.or_(t.status.in_(("requested", "in_transit")), t.updated_at >= cutoff)


def _stream(conn: sa.Connection, query: sa.Executable) -> Iterator[Any]:
    yield from conn.execution_options(stream_results=True, yield_per=2000).execute(query)


def _by_key(rows: Iterable[sa.Row[Any]], key: Callable[[sa.Row[Any]], Any]) -> Iterator[list[Any]]:
    """Consecutive rows with the same key, as lists (rows come sorted by that key)."""
    batch: list[sa.Row[Any]] = []
    for row in rows:
        if batch and key(batch[0]) != key(row):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _restore_stock(conn: sa.Connection, keys: Keys, run: _Runner) -> None:
    s = StockLevel
    q = sa.select(s.sku, s.location, s.on_hand, s.locked, s.safety_stock, s.version).order_by(
        s.sku, s.location
    )
    for rows in _by_key(_stream(conn, q), lambda r: r.sku):
        levels = [[r.location, str(r.on_hand), str(r.locked), str(r.safety_stock)] for r in rows]
        version = max(r.version for r in rows)
        run.add(
            restore_stock(
                stock=keys.stock(rows[0].sku), version=version, levels=orjson.dumps(levels)
            )
        )
        run.report.skus += 1


def _restore_bundles(conn: sa.Connection, keys: Keys, run: _Runner) -> None:
    """Every definition, deleted ones too (empty), so the version goes on counting."""
    b = BundleDefinition
    for row in _stream(conn, sa.select(b.sku, b.components, b.version)):
        comps = orjson.dumps(row.components).decode() if row.components else ""
        run.add(
            restore_bundle(
                bundle=keys.bundle(row.sku),
                stock=keys.stock(row.sku),
                version=row.version,
                components=comps,
            )
        )
        run.report.bundles += 1


# What both the lines and the pre-order lines of an order carry of the order itself.
_ORDER_COLUMNS = (
    Reservation.order_id,
    Reservation.status.label("order_status"),
    Reservation.fingerprint.label("order_fp"),
    Reservation.token.label("order_token"),
    Reservation.expires_at.label("order_exp"),
    Reservation.created_at,
)


def _restore_reservations(
    conn: sa.Connection, keys: Keys, run: _Runner, cutoff: Any, now: int, retention: int
) -> PreParts:
    """The live orders' parts and indexes; returns the parts that hold pre-order lines,
    which `_restore_preorders` gives them."""
    r, ln = Reservation, ReservationLine
    q = (
        sa.select(
            *_ORDER_COLUMNS,
            ln.token,
            ln.sku,
            ln.position,
            ln.location,
            ln.qty,
            ln.part_fingerprint,
            ln.status,
            ln.expires_at,
            ln.reserved_at,
            ln.settled_at,
            ln.bundles,
        )
        .join(ln, ln.order_id == r.order_id)
        .where(_live_reservation(cutoff), ln.status != "released")
        .order_by(r.order_id, ln.token, ln.position)
    )
    counted = _counted(conn, cutoff)
    pre = _preorder_lines(conn, cutoff)
    pre_parts: PreParts = defaultdict(list)
    for rows in _by_key(_stream(conn, q), lambda x: x.order_id):
        pre_rows = pre.pop(rows[0].order_id, [])
        _restore_order(rows, pre_rows, keys, run, now, retention, counted, pre_parts)
    for pre_rows in pre.values():  # orders whose lines are all pre-order lines
        _restore_order([], pre_rows, keys, run, now, retention, counted, pre_parts)
    return pre_parts


# sku -> [(part key, attempt token, the part's `pre` JSON)] for the parts whose first
# pre-order line is of that SKU
PreParts = dict[str, list[tuple[str, str, str]]]


@dataclass(frozen=True, slots=True)
class _PreLine:
    """A pre-order line of a live order, as `_restore_order` reads a part's line."""

    order_id: str
    order_status: str
    order_fp: str | None
    order_token: str
    order_exp: Any
    created_at: Any
    token: str
    sku: str
    seq: int
    location: str
    qty: int
    expected_at: int  # ms
    part_fingerprint: str
    status: str  # the part's: active, or the final status
    expires_at: Any
    reserved_at: Any
    settled_at: Any
    bundles: None = None


def _preorder_lines(conn: sa.Connection, cutoff: Any) -> dict[str, list[_PreLine]]:
    """The pre-order lines of the live orders (released attempts left out), by order."""
    p, r = Preorder, Reservation
    q = (
        sa.select(
            *_ORDER_COLUMNS,
            p.token,
            p.sku,
            p.seq,
            p.location,
            p.qty,
            p.expected_at,
            p.status,
            p.part_fingerprint,
            p.expires_at,
            p.reserved_at,
            p.updated_at,
        )
        .join(r, r.order_id == p.order_id)
        .where(_live_reservation(cutoff), p.status != "released")
        .order_by(p.order_id, p.sku, p.seq)
    )
    out: dict[str, list[_PreLine]] = {}
    for x in _stream(conn, q):
        open_ = x.status in PREORDER_OPEN
        out.setdefault(x.order_id, []).append(
            _PreLine(
                x.order_id,
                x.order_status,
                x.order_fp,
                x.order_token,
                x.order_exp,
                x.created_at,
                x.token,
                x.sku,
                int(x.seq),
                x.location,
                int(x.qty),
                datetime_to_ms(x.expected_at),
                x.part_fingerprint or "",
                "active" if open_ else x.status,
                x.expires_at if x.expires_at is not None else x.order_exp,
                x.reserved_at,
                None if open_ else x.updated_at,
            )
        )
    return out


# (order id, token) -> (customer, [[sku, qty, generation], ...]) as the part kept it
Counted = dict[tuple[str, str], tuple[str, list[list[Any]]]]


def _counted(conn: sa.Connection, cutoff: Any) -> Counted:
    """What the live reservations' parts counted against per-customer limits (`cu`, `cnt`
    of the part), so a restored part gives its units back when it settles."""
    c, r = CustomerCount, Reservation
    q = (
        sa.select(c.order_id, c.token, c.sku, c.customer_id, c.qty, c.generation)
        .join(r, r.order_id == c.order_id)
        .where(_live_reservation(cutoff))
        .order_by(c.order_id, c.token, c.sku)
    )
    out: Counted = {}
    for row in _stream(conn, q):
        entry = out.setdefault((row.order_id, row.token), (row.customer_id, []))
        entry[1].append([row.sku, row.qty, row.generation])
    return out


def _restore_order(
    rows: list[Any],
    pre_rows: list[_PreLine],
    keys: Keys,
    run: _Runner,
    now: int,
    retention: int,
    counted: Counted,
    pre_parts: PreParts,
) -> None:
    head = (rows or pre_rows)[0]
    order = head.order_id
    # One part per group: the lines (pre-order lines too) of the latest attempt that
    # reserved there.
    every = [*rows, *pre_rows]
    parts: dict[int, list[Any]] = defaultdict(list)
    for row in every:
        parts[keys.group_of(row.sku)].append(row)
    for g, lines in parts.items():
        tokens = {x.token for x in lines}
        if len(tokens) > 1:
            newest = max(lines, key=lambda x: (x.reserved_at or x.expires_at, x.token)).token
            parts[g] = [x for x in lines if x.token == newest]
    run.report.reservations += 1
    exp = datetime_to_ms(head.order_exp)
    body: dict[str, Any] = {
        "groups": {str(g): sorted({x.sku for x in ls}) for g, ls in sorted(parts.items())}
    }
    customers = {counted[(order, x.token)][0] for x in every if (order, x.token) in counted}
    if customers:
        body["cu"] = customers.pop()
    created = datetime_to_ms(head.created_at)
    index_until = exp + retention
    if index_until > now:
        fields = {
            "fp": head.order_fp or "",
            "tok": head.order_token,
            "at": str(created),
            "st": head.order_status,
            "exp": str(exp),
            "body": orjson.dumps(body).decode(),
        }
        if any(isinstance(x, _PreLine) for ls in parts.values() for x in ls):
            fields["pre"] = "1"  # a ship first checks the pre-order lines were converted
        run.add(
            restore_record(
                record=keys.order_index(order), fields=orjson.dumps(fields), expires_at=index_until
            )
        )
    for g, lines in sorted(parts.items()):
        plain = sorted((x for x in lines if not isinstance(x, _PreLine)), key=lambda x: x.position)
        # A part's pre-order lines in the order it took them: its lines come sorted by
        # (sku, location) and each SKU numbers its lines in that order.
        pre = sorted((x for x in lines if isinstance(x, _PreLine)), key=lambda x: (x.sku, x.seq))
        first = (plain or pre)[0]
        settled = first.status != "active"
        done = datetime_to_ms(first.settled_at) if settled and first.settled_at else None
        if settled and (done is None or done + retention <= now):
            continue
        customer, cnt = counted.get((order, first.token), ("", []))
        in_group = [e for e in cnt if keys.group_of(e[0]) == g]
        run.add(
            restore_part(
                part=keys.part(g, order),
                expiry=keys.expiry(g),
                order_id=order,
                status=first.status,
                part_fingerprint=first.part_fingerprint,
                token=first.token,
                reserved_at=datetime_to_ms(first.reserved_at) if first.reserved_at else created,
                expires_at=datetime_to_ms(first.expires_at),
                lines=orjson.dumps([[x.sku, x.location, x.qty] for x in plain]),
                order_fingerprint=head.order_fp or "",
                settled_at="" if done is None else done,
                settled_until="" if done is None else done + retention,
                bundle_lines=next((x.bundles for x in plain if x.bundles), ""),
                customer_id=customer if in_group else "",
                counted=orjson.dumps(in_group).decode() if in_group else "",
            )
        )
        run.report.parts += 1
        if pre:
            lines_json = orjson.dumps(
                [[x.sku, x.location, x.qty, x.seq, x.expected_at] for x in pre]
            )
            pre_parts[pre[0].sku].append((keys.part(g, order), first.token, lines_json.decode()))


def _restore_preorders(conn: sa.Connection, keys: Keys, run: _Runner, pre_parts: PreParts) -> None:
    """Each SKU's pre-order fields and book (`restore_book-2.lua`, which also gives the
    restored parts their pre-order lines), its closed incoming records, every ref's index."""
    fields: dict[str, dict[str, str]] = defaultdict(dict)
    books: dict[str, dict[str, str]] = defaultdict(dict)
    pol = PreorderPolicy
    for row in _stream(
        conn, sa.select(pol.sku, pol.location, pol.preorder_limit).where(pol.preorder_limit > 0)
    ):
        fields[row.sku][f"p:{row.location}"] = str(row.preorder_limit)
    i = IncomingStock
    closed: dict[str, dict[str, str]] = defaultdict(dict)
    index: list[tuple[str, str]] = []
    cols = (i.ref, i.sku, i.location, i.qty, i.expected_at, i.status, i.received_qty)
    for row in _stream(conn, sa.select(*cols).order_by(i.ref)):
        at = datetime_to_ms(row.expected_at)
        if row.status == "open":
            record = [row.location, row.qty, at]
            fields[row.sku][f"n:{row.ref}"] = orjson.dumps(record).decode()
        else:
            record = [row.location, row.qty, at, row.status, row.received_qty]
            closed[row.sku][row.ref] = orjson.dumps(record).decode()
        index.append((row.ref, row.sku))
    p, r = Preorder, Reservation
    for sku, top in conn.execute(sa.select(p.sku, sa.func.max(p.seq)).group_by(p.sku)):
        books[sku]["#"] = str(top)
    q = (
        sa.select(p.sku, p.seq, p.order_id, p.token, p.location, p.qty, p.expected_at, p.status)
        .join(r, r.order_id == p.order_id)
        .where(p.status.in_(PREORDER_OPEN), r.status == "active")
        .order_by(p.sku, p.seq)
    )
    awaiting: dict[tuple[str, str], int] = defaultdict(int)
    for row in _stream(conn, q):
        state = BOOK_STATE_OF[row.status]
        entry = [row.order_id, row.token, row.location, row.qty]
        entry += [datetime_to_ms(row.expected_at), state]
        books[row.sku][str(row.seq)] = orjson.dumps(entry).decode()
        if state == "a":
            awaiting[(row.sku, row.location)] += row.qty
    for (sku, loc), units in awaiting.items():
        fields[sku][f"q:{loc}"] = str(units)
    skus = sorted(fields.keys() | books.keys() | pre_parts.keys())
    # The version each SKU's stock hash was restored at (`_restore_stock`), for the SKUs
    # with pre-order state only: chosen in PostgreSQL, not by reading the catalogue's.
    s = StockLevel
    with_state = sa.union(
        sa.select(pol.sku).where(pol.preorder_limit > 0), sa.select(i.sku), sa.select(p.sku)
    ).subquery()
    versions = dict(
        conn.execute(
            sa.select(s.sku, sa.func.max(s.version))
            .where(s.sku.in_(sa.select(with_state.c.sku)))
            .group_by(s.sku)
        ).all()
    )
    for sku in skus:
        parts = pre_parts.get(sku, [])
        run.add(
            restore_book(
                stock=keys.stock(sku),
                book=keys.preorders(sku),
                parts=[key for key, _, _ in parts],
                version=versions.get(sku, 0),
                stock_fields=orjson.dumps(fields.get(sku, {})),
                book_fields=orjson.dumps(books.get(sku, {})),
                part_lines=orjson.dumps([[tok, pre] for _, tok, pre in parts]),
            )
        )
        run.report.preorder_books += 1
    for sku, records in sorted(closed.items()):
        run.add(
            restore_record(
                record=keys.incoming_closed(sku), fields=orjson.dumps(records), expires_at=""
            )
        )
    for n in range(0, len(index), CHUNK):
        pipe = run.redis.pipeline(transaction=False)
        for ref, sku in index[n : n + CHUNK]:
            pipe.set(keys.incoming_index(ref), sku, nx=True)
        pipe.execute()
    run.report.incoming_records += len(index)


def _restore_transfers(
    conn: sa.Connection, keys: Keys, run: _Runner, cutoff: Any, now: int, retention: int
) -> None:
    t = Transfer
    q = (
        sa.select(
            t.transfer_id,
            t.sku,
            t.from_location,
            t.to_location,
            t.qty,
            t.status,
            t.fingerprint,
            t.created_at,
            t.updated_at,
        )
        .where(_live_transfer(cutoff))
        .order_by(t.transfer_id)
    )
    for tr in _stream(conn, q):
        at, done = datetime_to_ms(tr.created_at), datetime_to_ms(tr.updated_at)
        record = {
            "tid": tr.transfer_id,
            "sku": tr.sku,
            "from": tr.from_location,
            "to": tr.to_location,
            "qty": str(tr.qty),
            "st": tr.status,
            "fp": tr.fingerprint,
            "at": str(at),
        }
        until: int | Literal[""] = ""
        if tr.status != "requested":
            record["done"] = str(done)
        if tr.status in ("received", "cancelled"):
            until = done + retention
            if until <= now:
                continue
        run.add(
            restore_record(
                record=keys.transfer(tr.sku, tr.transfer_id),
                fields=orjson.dumps(record),
                expires_at=until,
            )
        )
        # The index as the engine keeps it: no expiry while the transfer is open, the
        # record's own expiry once it ended.
        index = {
            "fp": tr.fingerprint,
            "tok": "warmup",
            "at": str(at),
            "body": orjson.dumps({"sku": tr.sku}).decode(),
        }
        run.add(
            restore_record(
                record=keys.transfer_index(tr.transfer_id),
                fields=orjson.dumps(index),
                expires_at=until,
            )
        )
        run.report.transfers += 1


def _restore_idempotency(conn: sa.Connection, keys: Keys, run: _Runner, now: int) -> None:
    i = IdempotencyRecord
    q = sa.select(i.key, i.sku, i.fingerprint, i.result, i.expires_at).where(
        i.expires_at > ms_to_datetime(now)
    )
    for row in _stream(conn, q):
        # The record's key is the event's `idem`, `Keys.op_suffix(kind, sku, ref)`.
        value = row.fingerprint + "\n" + orjson.dumps(row.result).decode()
        run.add(
            restore_op(
                op=keys.op_of(row.sku, row.key),
                value=value,
                expires_at=datetime_to_ms(row.expires_at),
            )
        )
        run.report.idempotency_records += 1


def _restore_limits(conn: sa.Connection, keys: Keys, run: _Runner, now: int) -> None:
    lim, c = CustomerLimit, CustomerCount
    limits: dict[str, Any] = {}
    cols = (lim.sku, lim.per_customer, lim.window_seconds, lim.version, lim.generation)
    for limit in _stream(conn, sa.select(*cols, lim.updated_at).order_by(lim.sku)):
        limits[limit.sku] = limit
        fields = {
            "n": str(limit.per_customer),
            "w": str(limit.window_seconds),
            "v": str(limit.version),
            "gen": str(limit.generation),
            "at": str(datetime_to_ms(limit.updated_at)),
        }
        run.add(
            restore_record(record=keys.limit(limit.sku), fields=orjson.dumps(fields), expires_at="")
        )
        run.report.limits += 1
    q = (
        sa.select(c.sku, c.customer_id, c.order_id, c.qty, c.generation, c.counted_at)
        .join(lim, lim.sku == c.sku)
        .where(
            c.status == "held",
            lim.per_customer > 0,
            c.generation == lim.generation,
        )
        .order_by(c.sku, c.customer_id, c.counted_at)
    )
    for rows in _by_key(_stream(conn, q), lambda x: (x.sku, x.customer_id)):
        head = rows[0]
        window_ms = limits[head.sku].window_seconds * 1000
        entries = [
            [x.qty, x.order_id, datetime_to_ms(x.counted_at)]
            for x in rows
            if not window_ms or datetime_to_ms(x.counted_at) > now - window_ms
        ]
        if not entries:
            continue
        until: int | Literal[""] = ""
        if window_ms:
            until = max(e[2] for e in entries) + window_ms + LIMIT_EXPIRY_MARGIN_MS
        run.add(
            restore_count(
                count=keys.customer_count(head.sku, head.customer_id),
                generation=head.generation,
                entries=orjson.dumps(entries),
                expires_at=until,
            )
        )
        run.report.customer_counts += 1


def run_warmup(*, if_empty: bool = False) -> str:
    """`inventory-cache warmup`: configured from INVENTORY_* variables; a JSON summary."""
    from inventory_cache.connection import make_sync_redis
    from inventory_cache.settings import get_settings
    from persistence.db import database_url, make_engine

    settings = get_settings()
    engine = make_engine(database_url(settings.database_url))
    try:
        report = warmup(make_sync_redis(settings), engine, settings, if_needed=if_empty)
    except WarmupBlocked as exc:
        print(f"warmup: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        engine.dispose()
    return orjson.dumps(report.as_dict()).decode()
