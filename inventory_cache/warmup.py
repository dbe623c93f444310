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
from typing import Any

import orjson
import sqlalchemy as sa
from redis.exceptions import NoScriptError
from rich.console import Console
from rich.progress import Progress

from inventory_cache import behind
from inventory_cache.apikeys import rebuild_mirror
from inventory_cache.engine import wall_clock_ms
from inventory_cache.errors import raise_for_reply
from inventory_cache.keys import Keys
from inventory_cache.lag import GROUP
from inventory_cache.redis_policy import require_safe_policy
from inventory_cache.scripts import Script, scripts_for
from inventory_cache.settings import Settings
from persistence.models import (
    BundleDefinition,
    CustomerCount,
    CustomerLimit,
    IdempotencyRecord,
    Reservation,
    ReservationLine,
    StockLevel,
    Transfer,
)
from persistence.sink import datetime_to_ms, ms_to_datetime

CHUNK = 500
# A windowed count outlives its newest entry by the window plus this margin, as
# `LIMIT_EXPIRY_MARGIN_MS` in lua/includes/customerLimit.lua.
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
    kept: int = 0
    skipped: bool = False
    groups: int = 0
    healed: list[int] = field(default_factory=list)
    api_keys: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Call = tuple[str, list[str], list[Any]]


@dataclass
class _Runner:
    """Sends script calls in pipelines of CHUNK, reloading scripts after a NOSCRIPT."""

    redis: Any
    scripts: dict[str, Script]
    report: WarmupReport
    advance: Callable[[int], None]
    pending: list[Call] = field(default_factory=list)

    def add(self, name: str, keys: list[str], args: list[Any]) -> None:
        self.scripts[name].check_keys(keys)
        self.pending.append((name, keys, args))
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        calls, self.pending = self.pending, []
        if not calls:
            return
        results = self._send(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for name in {calls[i][0] for i in missing}:
                self.redis.script_load(self.scripts[name].source)
            for i, r in zip(missing, self._send([calls[i] for i in missing]), strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
            reply = orjson.loads(r)
            raise_for_reply(reply)
            if reply.get("kept"):
                self.report.kept += 1
        self.advance(len(calls))

    def _send(self, calls: Sequence[Call]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for name, keys, args in calls:
            # The raw command: redis-py's cluster pipeline refuses its `evalsha` method but
            # routes EVALSHA by the keys it names.
            pipe.execute_command("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


class WarmupBlocked(RuntimeError):
    """A behind group still has events the worker has not written: healing it now would
    drop them."""


def _wait_written(redis: Any, keys: Keys, groups: Sequence[int], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while left := behind.unwritten(redis, keys, groups, GROUP):
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
    scripts = scripts_for(redis)
    show = sys.stderr.isatty() if progress is None else progress
    with (
        engine.connect() as conn,
        Progress(console=Console(stderr=True), disable=not show, transient=True) as bar,
    ):
        total = _count(conn, cutoff)
        task = bar.add_task("warmup", total=total)
        run = _Runner(redis, scripts, report, lambda n: bar.advance(task, n))
        _restore_stock(conn, keys, run)
        _restore_bundles(conn, keys, run)
        _restore_reservations(conn, keys, run, cutoff, now, retention)
        _restore_transfers(conn, keys, run, cutoff, now, retention)
        _restore_idempotency(conn, keys, run, now)
        _restore_limits(conn, keys, run, now)
        run.flush()
    behind.healed(redis, keys, marks, heal)
    report.healed = heal
    for g in keys.all_groups():
        run.add("mark_ready", [keys.ready(g)], [now])
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
        run.add("restore_stock", [keys.stock(rows[0].sku)], [version, orjson.dumps(levels)])
        run.report.skus += 1


def _restore_bundles(conn: sa.Connection, keys: Keys, run: _Runner) -> None:
    """Every definition, deleted ones too (empty), so the version goes on counting."""
    b = BundleDefinition
    for row in _stream(conn, sa.select(b.sku, b.components, b.version)):
        comps = orjson.dumps(row.components).decode() if row.components else ""
        run.add("restore_bundle", [keys.bundle(row.sku), keys.stock(row.sku)], [row.version, comps])
        run.report.bundles += 1


def _restore_reservations(
    conn: sa.Connection, keys: Keys, run: _Runner, cutoff: Any, now: int, retention: int
) -> None:
    r, ln = Reservation, ReservationLine
    q = (
        sa.select(
            r.order_id,
            r.status.label("order_status"),
            r.fingerprint.label("order_fp"),
            r.token.label("order_token"),
            r.expires_at.label("order_exp"),
            r.created_at,
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
    for rows in _by_key(_stream(conn, q), lambda x: x.order_id):
        _restore_order(rows, keys, run, now, retention, counted)


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
    rows: list[Any], keys: Keys, run: _Runner, now: int, retention: int, counted: Counted
) -> None:
    head = rows[0]
    order = head.order_id
    # One part per group: the lines of the latest attempt that reserved there.
    parts: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
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
    customers = {counted[(order, x.token)][0] for x in rows if (order, x.token) in counted}
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
        run.add(
            "restore_record",
            [keys.order_index(order)],
            [orjson.dumps(fields), index_until],
        )
    for g, lines in sorted(parts.items()):
        lines.sort(key=lambda x: x.position)
        first = lines[0]
        settled = first.status != "active"
        done = datetime_to_ms(first.settled_at) if settled and first.settled_at else None
        if settled and (done is None or done + retention <= now):
            continue
        customer, cnt = counted.get((order, first.token), ("", []))
        in_group = [e for e in cnt if keys.group_of(e[0]) == g]
        run.add(
            "restore_part",
            [keys.part(g, order), keys.expiry(g)],
            [
                order,
                first.status,
                first.part_fingerprint,
                first.token,
                datetime_to_ms(first.reserved_at) if first.reserved_at else created,
                datetime_to_ms(first.expires_at),
                orjson.dumps([[x.sku, x.location, x.qty] for x in lines]),
                head.order_fp or "",
                "" if done is None else done,
                "" if done is None else done + retention,
                next((x.bundles for x in lines if x.bundles), ""),
                customer if in_group else "",
                orjson.dumps(in_group).decode() if in_group else "",
            ],
        )
        run.report.parts += 1


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
        until: int | str = ""
        if tr.status != "requested":
            record["done"] = str(done)
        if tr.status in ("received", "cancelled"):
            until = done + retention
            if until <= now:
                continue
        run.add(
            "restore_record",
            [keys.transfer(tr.sku, tr.transfer_id)],
            [orjson.dumps(record), until],
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
            "restore_record",
            [keys.transfer_index(tr.transfer_id)],
            [orjson.dumps(index), until],
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
            "restore_op", [keys.op_of(row.sku, row.key)], [value, datetime_to_ms(row.expires_at)]
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
        run.add("restore_record", [keys.limit(limit.sku)], [orjson.dumps(fields), ""])
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
        until: int | str = ""
        if window_ms:
            until = max(e[2] for e in entries) + window_ms + LIMIT_EXPIRY_MARGIN_MS
        run.add(
            "restore_count",
            [keys.customer_count(head.sku, head.customer_id)],
            [head.generation, orjson.dumps(entries), until],
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
