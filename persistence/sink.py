"""Writes a `Batch` in one transaction: PostgreSQL in bulk, SQLite row by row for the demo.

PostgreSQL gets one statement per table, each inserting whole columns at once
(`INSERT ... SELECT FROM unnest(array, array, ...)`): a thousand events cost about as
much as one, close to COPY's speed but with ON CONFLICT. SQLite (the embedded demo) gets
the same statements through executemany. Both sinks keep the merge rules of
`persistence.ledger`, so a redelivered or reordered event changes nothing.

Rows are written in key order within each table, and the tables in a fixed order, so two
transactions (two workers, or one worker's two connections) wait for each other rather
than deadlock (a deadlock that still happens is reported as transient and the batch is
retried). Stock levels, the rows that concurrent batches share most, come last: a
transaction holds their locks only for its last statement and the commit, and the rest
of two batches is written side by side.

Errors are sorted for the worker: `TransientError` (connection lost, server down,
serialization failure, deadlock, a locked SQLite file) means "retry the same batch
later"; `RejectedBatch` (the data itself is refused: a value too long, a NUL byte)
means "find the bad entries and set them aside"; `VersionFork`, a kind of
`RejectedBatch`, says that a row's (sku, location, version) is already held by another
operation (a Redis that came back behind the ledger handed the version out again);
anything else is a bug or a missing migration and stops the worker.

Each batch also records, in the same transaction, the newest stream entry of each group
it wrote (`ledger_marks`): the evidence `inventory_cache.behind` checks Redis against.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from persistence.db import is_sqlite, libpq_url, make_engine
from persistence.ledger import Batch, marks_json

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TransientError(Exception):
    """The database could not take the batch now; the same batch may be retried."""


class RejectedBatch(Exception):
    """The database refused the data of the batch; retrying it unchanged cannot help."""


class VersionFork(RejectedBatch):
    """A ledger row's (sku, location, version) is held by another operation already:
    writing it would fork the SKU's history, so the database refused it."""


FORK_INDEX = "uq_movements_sku_location_version"


class Sink(Protocol):
    def apply(self, batch: Batch) -> None:
        """Write the whole batch in one transaction, or nothing."""

    def ping(self) -> None:
        """Raise TransientError unless the database answers."""

    def close(self) -> None: ...


def make_sink(url: str) -> Sink:
    return SqliteSink(make_engine(url)) if is_sqlite(url) else PgSink(url)


def ms_to_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since the epoch; SQLite hands back naive datetimes, which are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(milliseconds=1)


def _sorted(rows: dict[Any, Any]) -> list[Any]:
    return [rows[k] for k in sorted(rows)]


# Every line of an order, the pre-order lines too (a part may hold nothing else): a
# pre-order line still in its SKU's book counts as `active`, and a final one was settled
# when its status was set.
_ORDER_LINES = """(
  SELECT order_id, token, status, expires_at, reserved_at, settled_at FROM reservation_lines
  UNION ALL
  SELECT order_id, token,
    CASE WHEN status IN ('awaiting', 'locked', 'uncovered') THEN 'active' ELSE status END,
    expires_at, reserved_at,
    CASE WHEN status IN ('awaiting', 'locked', 'uncovered') THEN NULL ELSE updated_at END
  FROM preorders
)"""
# What an order's lines say of it (status, latest attempt, expiry, last change), for the
# orders a batch touched; SQLite's form (PostgreSQL's, `_PG_RECOMPUTE`, aggregates once).
_SQLITE_RECOMPUTE = f"""
UPDATE reservations SET
  status = (SELECT CASE
      WHEN sum(CASE WHEN l.status = 'active' THEN 1 ELSE 0 END) > 0 THEN 'active'
      WHEN sum(CASE WHEN l.status = 'shipped' THEN 1 ELSE 0 END) > 0 THEN 'shipped'
      WHEN sum(CASE WHEN l.status = 'cancelled' THEN 1 ELSE 0 END) > 0 THEN 'cancelled'
      WHEN sum(CASE WHEN l.status = 'expired' THEN 1 ELSE 0 END) > 0 THEN 'expired'
      ELSE 'released' END
    FROM {_ORDER_LINES} l WHERE l.order_id = reservations.order_id),
  token = COALESCE((SELECT l.token FROM {_ORDER_LINES} l
      WHERE l.order_id = reservations.order_id
      ORDER BY CASE WHEN l.status = 'released' THEN 1 ELSE 0 END,
               l.reserved_at DESC NULLS LAST, l.token DESC
      LIMIT 1), token),
  expires_at = COALESCE((SELECT max(l.expires_at) FROM {_ORDER_LINES} l
      WHERE l.order_id = reservations.order_id AND l.status <> 'released'), expires_at),
  updated_at = COALESCE((SELECT max(COALESCE(l.settled_at, l.reserved_at))
      FROM {_ORDER_LINES} l WHERE l.order_id = reservations.order_id), updated_at)
WHERE order_id {{match}}
"""

_TRANSFER_RANK = "(CASE {0}.status WHEN 'requested' THEN 0 WHEN 'in_transit' THEN 1 ELSE 2 END)"
_TRANSFER_STATUS = (
    f"status = CASE WHEN {_TRANSFER_RANK.format('excluded')} > "
    f"{_TRANSFER_RANK.format('transfers')} THEN excluded.status ELSE transfers.status END"
)
_LINE_UPDATE = """
  status = CASE WHEN reservation_lines.status = 'active' THEN excluded.status
                ELSE reservation_lines.status END,
  reserved_at = COALESCE(reservation_lines.reserved_at, excluded.reserved_at),
  settled_at = COALESCE(reservation_lines.settled_at, excluded.settled_at),
  bundles = COALESCE(reservation_lines.bundles, excluded.bundles)
"""
_BUNDLE_UPDATE = """
  components = excluded.components, version = excluded.version,
  updated_at = excluded.updated_at
WHERE bundles.version < excluded.version
"""
_LIMIT_UPDATE = """
  per_customer = excluded.per_customer, window_seconds = excluded.window_seconds,
  version = excluded.version, generation = excluded.generation, updated_at = excluded.updated_at
WHERE customer_limits.version < excluded.version
"""
_COUNT_UPDATE = """
  status = CASE WHEN customer_counts.status = 'held' THEN excluded.status
                ELSE customer_counts.status END
"""
_INCOMING_UPDATE = """
  sku = excluded.sku, location = excluded.location, qty = excluded.qty,
  expected_at = excluded.expected_at, status = excluded.status,
  received_qty = excluded.received_qty, version = excluded.version,
  updated_at = excluded.updated_at
WHERE incoming_stock.version < excluded.version
"""
_PREORDER_LIMIT_UPDATE = """
  preorder_limit = excluded.preorder_limit, version = excluded.version,
  updated_at = excluded.updated_at
WHERE preorder_policies.version < excluded.version
"""
_PREORDER_RANK = (
    "(CASE {0}.status WHEN 'awaiting' THEN 0 WHEN 'locked' THEN 1 WHEN 'uncovered' THEN 1"
    " ELSE 2 END)"
)
_PREORDER_UP = f"{_PREORDER_RANK.format('excluded')} > {_PREORDER_RANK.format('preorders')}"
_PREORDER_UPDATE = f"""
  status = CASE WHEN {_PREORDER_UP} THEN excluded.status ELSE preorders.status END,
  updated_at = CASE WHEN {_PREORDER_UP} THEN excluded.updated_at ELSE preorders.updated_at END,
  reserved_at = COALESCE(preorders.reserved_at, excluded.reserved_at),
  part_fingerprint = COALESCE(preorders.part_fingerprint, excluded.part_fingerprint),
  expires_at = COALESCE(preorders.expires_at, excluded.expires_at)
"""
_LEVEL_UPDATE = """
  on_hand = excluded.on_hand, locked = excluded.locked,
  safety_stock = excluded.safety_stock, version = excluded.version,
  updated_at = excluded.updated_at
WHERE stock_levels.version < excluded.version
"""


# ---------------------------------------------------------------------------- PostgreSQL
def _ts(col: str) -> str:
    return f"'epoch'::timestamptz + {col} * interval '1 millisecond'"


_PG_ORDERS = f"""
INSERT INTO reservations (order_id, status, expires_at, fingerprint, token, created_at,
                          updated_at)
SELECT o, 'active', {_ts("e")}, fp, tok, {_ts("t")}, {_ts("t")}
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])
  AS u(o, fp, tok, t, e)
ON CONFLICT (order_id) DO UPDATE SET
  fingerprint = COALESCE(reservations.fingerprint, excluded.fingerprint),
  created_at = LEAST(reservations.created_at, excluded.created_at)
"""
_PG_TRANSFERS = f"""
INSERT INTO transfers (transfer_id, sku, from_location, to_location, qty, status,
                       fingerprint, created_at, updated_at)
SELECT tid, sku, fr, dst, qty, st, fp, {_ts("t0")}, {_ts("t1")}
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],
            %s::text[], %s::bigint[], %s::bigint[]) AS u(tid, sku, fr, dst, qty, st, fp, t0, t1)
ON CONFLICT (transfer_id) DO UPDATE SET
  {_TRANSFER_STATUS},
  created_at = LEAST(transfers.created_at, excluded.created_at),
  updated_at = GREATEST(transfers.updated_at, excluded.updated_at)
"""
_PG_LEVELS = f"""
INSERT INTO stock_levels (sku, location, on_hand, locked, safety_stock, version, updated_at)
SELECT sku, loc, oh, lk, ss, v, {_ts("t")}
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[]) AS u(sku, loc, oh, lk, ss, v, t)
ON CONFLICT (sku, location) DO UPDATE SET {_LEVEL_UPDATE}
"""
_PG_IDEMPOTENCY = f"""
INSERT INTO idempotency_records (key, sku, fingerprint, result, created_at, expires_at)
SELECT k, sku, fp, r::jsonb, {_ts("t")}, {_ts("e")}
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])
  AS u(k, sku, fp, r, t, e)
ON CONFLICT (key) DO NOTHING
"""
_PG_MOVEMENTS = f"""
INSERT INTO movements (op_id, sku, location, type, reason, ref, delta_on_hand, delta_locked,
                       on_hand_after, locked_after, safety_stock_after, version, created_at,
                       stream_id, recorded_at, bundle)
SELECT op, sku, loc, ty, re, ref, doh, dl, oh, lk, ss, v, {_ts("t")}, sid,
       statement_timestamp(), b
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::text[], %s::text[])
  AS u(op, sku, loc, ty, re, ref, doh, dl, oh, lk, ss, v, t, sid, b)
ON CONFLICT (op_id, sku, location) DO NOTHING
"""
_PG_LINES = f"""
INSERT INTO reservation_lines (order_id, token, sku, position, location, qty,
                               part_fingerprint, status, expires_at, reserved_at, settled_at,
                               bundles)
SELECT o, tok, sku, pos, loc, qty, fp, st, {_ts("e")}, {_ts("r")}, {_ts("s")}, b
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::bigint[],
            %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[])
  AS u(o, tok, sku, pos, loc, qty, fp, st, e, r, s, b)
ON CONFLICT (order_id, token, sku, position) DO UPDATE SET {_LINE_UPDATE}
"""
_PG_BUNDLES = f"""
INSERT INTO bundles (sku, components, version, updated_at)
SELECT sku, c::jsonb, v, {_ts("t")}
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) AS u(sku, c, v, t)
ON CONFLICT (sku) DO UPDATE SET {_BUNDLE_UPDATE}
"""
_PG_LIMITS = f"""
INSERT INTO customer_limits (sku, per_customer, window_seconds, version, generation, updated_at)
SELECT sku, n, w, v, gen, {_ts("t")}
FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::bigint[], %s::bigint[], %s::bigint[])
  AS u(sku, n, w, v, gen, t)
ON CONFLICT (sku) DO UPDATE SET {_LIMIT_UPDATE}
"""
_PG_COUNTS = f"""
INSERT INTO customer_counts (order_id, token, sku, customer_id, qty, generation, counted_at,
                             status)
SELECT o, tok, sku, cu, qty, gen, {_ts("t")}, st
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::text[]) AS u(o, tok, sku, cu, qty, gen, t, st)
ON CONFLICT (order_id, token, sku) DO UPDATE SET {_COUNT_UPDATE}
"""
_PG_INCOMING = f"""
INSERT INTO incoming_stock (ref, sku, location, qty, expected_at, status, received_qty,
                            version, updated_at)
SELECT ref, sku, loc, qty, {_ts("e")}, st, got, v, {_ts("t")}
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[],
            %s::bigint[], %s::bigint[], %s::bigint[]) AS u(ref, sku, loc, qty, e, st, got, v, t)
ON CONFLICT (ref) DO UPDATE SET {_INCOMING_UPDATE}
"""
_PG_PREORDER_LIMITS = f"""
INSERT INTO preorder_policies (sku, location, preorder_limit, version, updated_at)
SELECT sku, loc, n, v, {_ts("t")}
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
  AS u(sku, loc, n, v, t)
ON CONFLICT (sku, location) DO UPDATE SET {_PREORDER_LIMIT_UPDATE}
"""
_PG_PREORDERS = f"""
INSERT INTO preorders (sku, seq, order_id, token, location, qty, expected_at, status,
                       reserved_at, updated_at, part_fingerprint, expires_at)
SELECT sku, seq, o, tok, loc, qty, {_ts("x")}, st, {_ts("r")}, {_ts("t")}, fp, {_ts("e")}
FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[],
            %s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::bigint[])
  AS u(sku, seq, o, tok, loc, qty, x, st, r, t, fp, e)
ON CONFLICT (sku, seq) DO UPDATE SET {_PREORDER_UPDATE}
"""
# `_SQLITE_RECOMPUTE` in one pass over the batch's lines (an aggregate per order instead of a
# subquery per column), and the first transaction to write a finished status
# (`Reservation.finished_xid`). An order without lines is `released`, as above.
_PG_RECOMPUTE = (
    """
UPDATE reservations r SET
  status = a.status,
  token = COALESCE(a.token, r.token),
  expires_at = COALESCE(a.expires_at, r.expires_at),
  updated_at = COALESCE(a.updated_at, r.updated_at),
  finished_xid = COALESCE(r.finished_xid, CASE WHEN a.status IN ('shipped', 'cancelled',
      'expired') THEN pg_current_xact_id()::text::bigint END)
FROM (
  SELECT o.order_id,
    CASE WHEN bool_or(l.status = 'active') THEN 'active'
         WHEN bool_or(l.status = 'shipped') THEN 'shipped'
         WHEN bool_or(l.status = 'cancelled') THEN 'cancelled'
         WHEN bool_or(l.status = 'expired') THEN 'expired'
         ELSE 'released' END AS status,
    (array_agg(l.token ORDER BY l.status = 'released', l.reserved_at DESC NULLS LAST,
                                l.token DESC))[1] AS token,
    max(l.expires_at) FILTER (WHERE l.status <> 'released') AS expires_at,
    max(COALESCE(l.settled_at, l.reserved_at)) AS updated_at
  FROM unnest(%s::text[]) AS o(order_id)
  LEFT JOIN """
    + _ORDER_LINES
    + """ l ON l.order_id = o.order_id
  GROUP BY o.order_id
) a
WHERE r.order_id = a.order_id
"""
)
_MARKS = "INSERT INTO ledger_marks (marks) VALUES ({})"


def _text_array(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal with every element quoted, so that no value needs looking
    at unless it holds a quote or a backslash (psycopg's list adapter inspects and escapes
    element by element in Python: several times slower on a batch)."""
    if not values:
        return "{}"
    if None not in values:
        whole = "".join(values)  # type: ignore[arg-type]
        if '"' not in whole and "\\" not in whole:
            return '{"' + '","'.join(values) + '"}'  # type: ignore[arg-type]
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def _int_array(values: Sequence[int | None]) -> str:
    if None not in values:
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def _columns(rows: Sequence[tuple[Any, ...]], kinds: str) -> list[str]:
    """Array literals of each column of `rows`; `kinds` says t(ext) or i(nteger) per column."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in kinds]
    return [
        _text_array(col) if kind == "t" else _int_array(col)
        for col, kind in zip(cols, kinds, strict=True)
    ]


def _pg_error(exc: psycopg.Error) -> Exception:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name == FORK_INDEX:
        return VersionFork(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return RejectedBatch(f"{type(exc).__name__}: {exc}")
    return exc


# Every row a batch touches has a key: the statements insert through their conflict
# targets, and the recompute finds a batch's orders, their lines and pre-orders through
# their primary key and `order_id` indexes (as do the foreign-key checks). PostgreSQL
# plans a prepared statement once for good, until its tables are next analyzed
# (autovacuum: a minute or more); on a new ledger that plan is made while the tables are
# nearly empty, reads the order tables whole to recompute each batch, and each batch then
# costs more as the ledger grows. So each of the sink's transactions plans no sequential
# scan and no hash or merge join, whatever the statistics say. Set for the transaction
# only (`SET LOCAL`): behind a pooler that hands each transaction another server session,
# a session setting would miss the sink's next transactions and stay with whoever gets
# that session next.
_KEYED_PLANS = (
    "SELECT set_config('enable_seqscan', 'off', true),"
    " set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true)"
)


class PgSink:
    """One psycopg connection, reopened after any transient failure."""

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        self._dsn = libpq_url(url)
        self._timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, connect_timeout=self._timeout)
        return self._conn

    def ping(self) -> None:
        try:
            conn = self._connection()
            conn.execute("SELECT 1")
            conn.rollback()
        except psycopg.Error as exc:
            self.close()
            raise TransientError(str(exc)) from exc

    def apply(self, batch: Batch) -> None:
        try:
            conn = self._connection()
            with conn.pipeline(), conn.transaction():
                conn.execute(_KEYED_PLANS)
                self._write(conn, batch)
        except psycopg.Error as exc:
            err = _pg_error(exc)
            if isinstance(err, TransientError):
                self.close()
            if err is exc:
                raise
            raise err from exc

    @staticmethod
    def _write(conn: psycopg.Connection[Any], b: Batch) -> None:
        if b.orders:
            conn.execute(_PG_ORDERS, _columns(_sorted(b.orders), "tttii"))
        if b.transfers:
            conn.execute(_PG_TRANSFERS, _columns(_sorted(b.transfers), "ttttittii"))
        if b.idempotency:
            conn.execute(_PG_IDEMPOTENCY, _columns(_sorted(b.idempotency), "ttttii"))
        if b.movements:
            conn.execute(_PG_MOVEMENTS, _columns(list(b.movements.values()), "ttttttiiiiiiitt"))
        if b.lines:
            conn.execute(_PG_LINES, _columns(_sorted(b.lines), "tttitittiiit"))
        if b.bundles:
            conn.execute(_PG_BUNDLES, _columns(_sorted(b.bundles), "ttii"))
        if b.preorders:
            conn.execute(_PG_PREORDERS, _columns(_sorted(b.preorders), "titttiitiiti"))
        if b.orders:
            conn.execute(_PG_RECOMPUTE, [_text_array(sorted(b.orders))])
        if b.limits:
            conn.execute(_PG_LIMITS, _columns(_sorted(b.limits), "tiiiii"))
        if b.counts:
            conn.execute(_PG_COUNTS, _columns(_sorted(b.counts), "ttttiiit"))
        if b.incoming:
            conn.execute(_PG_INCOMING, _columns(_sorted(b.incoming), "tttiitiii"))
        if b.preorder_limits:
            conn.execute(_PG_PREORDER_LIMITS, _columns(_sorted(b.preorder_limits), "ttiii"))
        if b.levels:
            conn.execute(_PG_LEVELS, _columns(_sorted(b.levels), "ttiiiii"))
        if b.marks:
            conn.execute(_MARKS.format("%s"), [marks_json(b.marks)])

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


# ---------------------------------------------------------------------------- SQLite
def _sqlite_ts(ms: int | None) -> str | None:
    """SQLAlchemy's SQLite storage format for DateTime: naive UTC, microseconds."""
    if ms is None:
        return None
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S.%f")


_SQLITE_ORDERS = """
INSERT INTO reservations (order_id, status, expires_at, fingerprint, token, created_at,
                          updated_at)
VALUES (?, 'active', ?, ?, ?, ?, ?)
ON CONFLICT (order_id) DO UPDATE SET
  fingerprint = COALESCE(reservations.fingerprint, excluded.fingerprint),
  created_at = min(reservations.created_at, excluded.created_at)
"""
_SQLITE_TRANSFERS = f"""
INSERT INTO transfers (transfer_id, sku, from_location, to_location, qty, status,
                       fingerprint, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (transfer_id) DO UPDATE SET
  {_TRANSFER_STATUS},
  created_at = min(transfers.created_at, excluded.created_at),
  updated_at = max(transfers.updated_at, excluded.updated_at)
"""
_SQLITE_LEVELS = f"""
INSERT INTO stock_levels (sku, location, on_hand, locked, safety_stock, version, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sku, location) DO UPDATE SET {_LEVEL_UPDATE}
"""
_SQLITE_IDEMPOTENCY = """
INSERT INTO idempotency_records (key, sku, fingerprint, result, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO NOTHING
"""
_SQLITE_MOVEMENTS = """
INSERT INTO movements (op_id, sku, location, type, reason, ref, delta_on_hand, delta_locked,
                       on_hand_after, locked_after, safety_stock_after, version, created_at,
                       stream_id, recorded_at, bundle)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (op_id, sku, location) DO NOTHING
"""
_SQLITE_LINES = f"""
INSERT INTO reservation_lines (order_id, token, sku, position, location, qty,
                               part_fingerprint, status, expires_at, reserved_at, settled_at,
                               bundles)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (order_id, token, sku, position) DO UPDATE SET {_LINE_UPDATE}
"""


_SQLITE_BUNDLES = f"""
INSERT INTO bundles (sku, components, version, updated_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (sku) DO UPDATE SET {_BUNDLE_UPDATE}
"""
_SQLITE_LIMITS = f"""
INSERT INTO customer_limits (sku, per_customer, window_seconds, version, generation, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (sku) DO UPDATE SET {_LIMIT_UPDATE}
"""
_SQLITE_COUNTS = f"""
INSERT INTO customer_counts (order_id, token, sku, customer_id, qty, generation, counted_at,
                             status)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (order_id, token, sku) DO UPDATE SET {_COUNT_UPDATE}
"""

_SQLITE_INCOMING = f"""
INSERT INTO incoming_stock (ref, sku, location, qty, expected_at, status, received_qty,
                            version, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ref) DO UPDATE SET {_INCOMING_UPDATE}
"""
_SQLITE_PREORDER_LIMITS = f"""
INSERT INTO preorder_policies (sku, location, preorder_limit, version, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sku, location) DO UPDATE SET {_PREORDER_LIMIT_UPDATE}
"""
_SQLITE_PREORDERS = f"""
INSERT INTO preorders (sku, seq, order_id, token, location, qty, expected_at, status,
                       reserved_at, updated_at, part_fingerprint, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sku, seq) DO UPDATE SET {_PREORDER_UPDATE}
"""


def _sqlite_fork(exc: sqlite3.IntegrityError) -> bool:
    """SQLite names the columns, not the index: `UNIQUE constraint failed: movements.sku,
    movements.location, movements.version`."""
    return "movements.version" in str(exc)


class SqliteSink:
    """The demo's sink: the same statements, row by row, through SQLAlchemy's engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def ping(self) -> None:
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DBAPIError as exc:
            raise TransientError(str(exc)) from exc

    def apply(self, batch: Batch) -> None:
        try:
            with self._engine.begin() as conn:
                for sql, rows in self._statements(batch):
                    if rows:
                        conn.exec_driver_sql(sql, rows)
        except DBAPIError as exc:
            if isinstance(exc.orig, sqlite3.OperationalError):
                raise TransientError(str(exc.orig)) from exc
            if isinstance(exc.orig, sqlite3.IntegrityError) and _sqlite_fork(exc.orig):
                raise VersionFork(str(exc.orig)) from exc
            if isinstance(exc.orig, sqlite3.IntegrityError | sqlite3.DataError):
                raise RejectedBatch(str(exc.orig)) from exc
            raise

    @staticmethod
    def _statements(b: Batch) -> list[tuple[str, list[tuple[Any, ...]]]]:
        t = _sqlite_ts
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        orders = sorted(b.orders)
        match = "IN (" + ", ".join("?" for _ in orders) + ")"
        return [
            (
                _SQLITE_ORDERS,
                [(o, t(e), fp, tok, t(ts), t(ts)) for o, fp, tok, ts, e in _sorted(b.orders)],
            ),
            (
                _SQLITE_TRANSFERS,
                [(*r[:7], t(r[7]), t(r[8])) for r in _sorted(b.transfers)],
            ),
            (_SQLITE_LEVELS, [(*r[:6], t(r[6])) for r in _sorted(b.levels)]),
            (
                _SQLITE_IDEMPOTENCY,
                [(*r[:4], t(r[4]), t(r[5])) for r in _sorted(b.idempotency)],
            ),
            (
                _SQLITE_MOVEMENTS,
                [(*r[:12], t(r[12]), r[13], now, r[14]) for r in b.movements.values()],
            ),
            (
                _SQLITE_LINES,
                [(*r[:8], t(r[8]), t(r[9]), t(r[10]), r[11]) for r in _sorted(b.lines)],
            ),
            (_SQLITE_BUNDLES, [(*r[:3], t(r[3])) for r in _sorted(b.bundles)]),
            (
                _SQLITE_PREORDERS,
                [
                    (*r[:6], t(r[6]), r[7], t(r[8]), t(r[9]), r[10], t(r[11]))
                    for r in _sorted(b.preorders)
                ],
            ),
            (_SQLITE_RECOMPUTE.format(match=match), [tuple(orders)] if orders else []),
            (_SQLITE_LIMITS, [(*r[:5], t(r[5])) for r in _sorted(b.limits)]),
            (_SQLITE_COUNTS, [(*r[:6], t(r[6]), r[7]) for r in _sorted(b.counts)]),
            (
                _SQLITE_INCOMING,
                [(*r[:4], t(r[4]), r[5], r[6], r[7], t(r[8])) for r in _sorted(b.incoming)],
            ),
            (_SQLITE_PREORDER_LIMITS, [(*r[:4], t(r[4])) for r in _sorted(b.preorder_limits)]),
            (_MARKS.format("?"), [(marks_json(b.marks),)] if b.marks else []),
        ]

    def close(self) -> None:
        self._engine.dispose()
