"""The sinks write events so that a redelivery or a reordering changes nothing
(docs/durability.md).
Every test runs on PostgreSQL (the bulk `unnest` statements) and on SQLite (the
demo's row-by-row statements): both must end in the same rows."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from persistence.db import make_engine
from persistence.events import Entry, MalformedEvent, parse
from persistence.ledger import build
from persistence.models import Base
from persistence.sink import PgSink, RejectedBatch, Sink, datetime_to_ms, make_sink
from tests.support.postgres import fresh_database

T0 = 1_800_000_000_000
RETENTION_MS = 7 * 86_400_000


_seq = iter(range(1, 1_000_000))


def entry(**fields: Any) -> Entry:
    raw = {k.encode(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in fields.items()}
    return Entry(group=3, id=f"{T0}-{next(_seq)}", fields=raw)


def movement(ref: str, sku: str, loc: str, delta: int, after: int, version: int) -> Entry:
    return entry(
        t="inbound",
        op=f"inbound:{ref}",
        ts=T0 + version,
        ref=ref,
        reason="inbound",
        rows=orjson.dumps([[sku, loc, delta, 0, after, 0, 0, version]]),
        idem=f"inbound:{sku}:{ref}",
        fp="fp-" + ref,
    )


def part(
    t: str, order: str, tok: str, lines: list[list[Any]], rows: list[list[Any]], ts: int, **kw: Any
) -> Entry:
    st = {"reserve": "active", "cancel": "cancelled", "ship": "shipped", "release": "released"}[t]
    return entry(
        t=t,
        op=f"{t}:{order}:{tok}",
        ts=ts,
        ref=order,
        reason=t,
        rows=orjson.dumps(rows),
        order=order,
        exp=T0 + 900_000,
        lines=orjson.dumps(lines),
        st=st,
        fp="pfp-" + order,
        tok=tok,
        **kw,
    )


def transfer(step: str, st: str, version: int, ts: int) -> Entry:
    doh, dl = {"request": (0, 100), "ship": (-100, -100)}[step]
    return entry(
        t=f"transfer_{step}",
        op=f"transfer:t1:{step}",
        ts=ts,
        ref="t1",
        reason=f"transfer_{step}",
        rows=orjson.dumps([["B", "north", doh, dl, 1000 + doh, 100 + dl, 0, version]]),
        tid="t1",
        sku="B",
        to="south",
        qty=100,
        st=st,
        fp="tfp",
        **{"from": "north"},
    )


def apply(sink: Sink, *entries: Entry) -> None:
    sink.apply(build([parse(e) for e in entries], RETENTION_MS))


def rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def times(engine: sa.Engine, table: str, *columns: str) -> list[int]:
    """Timestamps of the table's only row, in ms (typed, so SQLite's text is parsed too)."""
    t = Base.metadata.tables[table]
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(*(t.c[c] for c in columns))).all()
    return [datetime_to_ms(v) for v in row]


def test_applying_the_same_events_twice_adds_no_row(ledger_sink: tuple[Sink, sa.Engine]) -> None:
    sink, engine = ledger_sink
    events = [movement("r1", "A", "north", 10, 10, 1), movement("r2", "A", "north", 5, 15, 2)]
    apply(sink, *events)
    apply(sink, *events)
    apply(sink, events[0])
    assert rows(
        engine, "SELECT op_id, delta_on_hand, on_hand_after FROM movements ORDER BY id"
    ) == [
        ("inbound:r1", 10, 10),
        ("inbound:r2", 5, 15),
    ]
    assert rows(engine, "SELECT sku, location, on_hand, version FROM stock_levels") == [
        ("A", "north", 15, 2)
    ]
    assert rows(engine, "SELECT key, sku, fingerprint FROM idempotency_records ORDER BY key") == [
        ("inbound:A:r1", "A", "fp-r1"),
        ("inbound:A:r2", "A", "fp-r2"),
    ]
    records = Base.metadata.tables["idempotency_records"]
    with engine.connect() as conn:
        first = conn.execute(sa.select(records.c.result).order_by(records.c.key)).scalars().first()
    assert first == {
        "sku": "A",
        "location": "north",
        "on_hand": 10,
        "locked": 0,
        "safety_stock": 0,
        "available": 10,
    }


def test_an_older_version_never_moves_a_level_backwards(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    apply(sink, movement("r2", "A", "north", 5, 15, 2))
    apply(sink, movement("r1", "A", "north", 10, 10, 1))
    assert rows(engine, "SELECT on_hand, version FROM stock_levels") == [(15, 2)]
    assert rows(engine, "SELECT count(*) FROM movements") == [(2,)]


def test_two_picks_of_one_location_in_one_reservation_are_one_ledger_row(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    lines = [["A", "north", 1], ["A", "north", 2]]
    rows_ = [["A", "north", 0, 1, 10, 1, 0, 4], ["A", "north", 0, 2, 10, 3, 0, 4]]
    apply(sink, part("reserve", "o1", "k1", lines, rows_, T0, ofp="ofp1"))
    assert rows(engine, "SELECT delta_locked, locked_after FROM movements") == [(3, 3)]
    assert rows(engine, "SELECT locked, version FROM stock_levels") == [(3, 4)]
    assert rows(
        engine, "SELECT position, location, qty FROM reservation_lines ORDER BY position"
    ) == [(0, "north", 1), (1, "north", 2)]


def test_a_cancel_applied_before_its_reserve_still_ends_cancelled(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    lines = [["A", "north", 2]]
    reserve = part("reserve", "o1", "k1", lines, [["A", "north", 0, 2, 10, 2, 0, 1]], T0, ofp="of")
    cancel = part("cancel", "o1", "k1", lines, [["A", "north", 0, -2, 10, 0, 0, 2]], T0 + 5)
    apply(sink, cancel)
    apply(sink, reserve)
    assert rows(engine, "SELECT status, fingerprint, token FROM reservations") == [
        ("cancelled", "of", "k1")
    ]
    assert rows(engine, "SELECT status FROM reservation_lines") == [("cancelled",)]
    assert rows(engine, "SELECT locked, version FROM stock_levels") == [(0, 2)]
    assert times(engine, "reservation_lines", "reserved_at", "settled_at") == [T0, T0 + 5]


def test_a_compensated_attempt_then_a_retry_leaves_the_retry_active(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    lines = [["A", "north", 1]]
    first = part("reserve", "o1", "k1", lines, [["A", "north", 0, 1, 5, 1, 0, 1]], T0, ofp="of")
    undo = part("release", "o1", "k1", lines, [["A", "north", 0, -1, 5, 0, 0, 2]], T0 + 1)
    retry = part("reserve", "o1", "k2", lines, [["A", "north", 0, 1, 5, 1, 0, 3]], T0 + 2, ofp="of")
    apply(sink, retry, first)
    apply(sink, undo)
    assert rows(engine, "SELECT status, token FROM reservations") == [("active", "k2")]
    assert rows(engine, "SELECT token, status FROM reservation_lines ORDER BY token") == [
        ("k1", "released"),
        ("k2", "active"),
    ]


def test_a_transfer_keeps_the_furthest_status_and_its_request_time(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    apply(sink, transfer("ship", "in_transit", 2, T0 + 60_000))
    apply(sink, transfer("request", "requested", 1, T0))
    assert rows(engine, "SELECT status FROM transfers") == [("in_transit",)]
    assert times(engine, "transfers", "created_at", "updated_at") == [T0, T0 + 60_000]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"t": "inbound", "op": "x", "ts": "1"}, "missing field 'rows'"),
        ({"t": "inbound", "op": "x", "ts": "1", "rows": "[1"}, "not JSON"),
        ({"t": "inbound", "op": "x", "ts": "soon", "rows": "[]"}, "ts is not an integer"),
        ({"t": "inbound", "op": "x", "ts": "1", "rows": '[["A","n",1]]'}, "a row is not"),
        ({"t": "inbound", "op": "x", "ts": "1", "rows": "[]"}, "without rows"),
    ],
)
def test_malformed_entries_are_refused_before_any_write(
    fields: dict[str, str], reason: str
) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse(entry(**fields))


def test_postgresql_refusing_a_value_rejects_the_batch_and_writes_nothing() -> None:
    with fresh_database() as url:
        sink, engine = make_sink(url), make_engine(url)
        try:
            with pytest.raises(RejectedBatch):
                apply(
                    sink,
                    movement("ok", "A", "north", 1, 1, 1),
                    movement("b", "A\x00", "n", 1, 1, 1),
                )
            assert rows(engine, "SELECT count(*) FROM movements") == [(0,)]
        finally:
            sink.close()
            engine.dispose()


def limit(n: int, w: int, v: int, gen: int) -> Entry:
    return entry(
        t="limit",
        op=f"limit:A:{v}",
        ts=T0 + v,
        ref="A",
        reason="set" if n else "remove",
        rows="[]",
        sku="A",
        n=n,
        w=w,
        v=v,
        gen=gen,
    )


def test_the_newest_limit_version_wins_in_any_order(ledger_sink: tuple[Sink, sa.Engine]) -> None:
    sink, engine = ledger_sink
    apply(sink, limit(3, 60, 2, 1))
    apply(sink, limit(2, 0, 1, 1), limit(3, 60, 2, 1))
    assert rows(
        engine, "SELECT sku, per_customer, window_seconds, version FROM customer_limits"
    ) == [("A", 3, 60, 2)]
    apply(sink, limit(0, 0, 3, 1))
    assert rows(engine, "SELECT per_customer, version, generation FROM customer_limits") == [
        (0, 3, 1)
    ]


def test_counted_units_stay_returned_once_given_back_whatever_the_order(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    line, row = [["A", "north", 2]], [["A", "north", 0, 2, 10, 2, 0, 1]]
    counted = {"cu": "c1", "cnt": orjson.dumps([["A", 2, 1]])}
    reserve = part("reserve", "o1", "k1", line, row, T0 + 1, **counted)
    cancel = part(
        "cancel",
        "o1",
        "k1",
        line,
        [["A", "north", 0, -2, 10, 0, 0, 2]],
        T0 + 2,
        cat=T0 + 1,
        **counted,
    )
    shipped = part(
        "ship",
        "o2",
        "k2",
        line,
        [["A", "north", -2, -2, 8, 0, 0, 4]],
        T0 + 4,
        cat=T0 + 3,
        **counted,
    )

    apply(sink, cancel, shipped)
    apply(sink, reserve)

    assert rows(
        engine,
        "SELECT order_id, sku, customer_id, qty, generation, status FROM customer_counts"
        " ORDER BY order_id",
    ) == [("o1", "A", "c1", 2, 1, "returned"), ("o2", "A", "c1", 2, 1, "held")]
    t = Base.metadata.tables["customer_counts"]
    with engine.connect() as conn:
        counted_at = conn.execute(sa.select(t.c.counted_at).order_by(t.c.order_id)).scalars()
        assert [datetime_to_ms(v) for v in counted_at] == [T0 + 1, T0 + 3]


def test_counted_units_without_a_part_are_malformed() -> None:
    bad = entry(
        t="adjust",
        op="adjust:x",
        ts=T0,
        rows=orjson.dumps([["A", "north", 1, 0, 1, 0, 0, 1]]),
        cu="c1",
        cnt=orjson.dumps([["A", 1, 1]]),
    )
    with pytest.raises(MalformedEvent):
        parse(bad)


def _table_counters(engine: sa.Engine, lines_inserted: int) -> dict[str, int]:
    """Sequential scans so far of the tables an order's batch reads, once the statistics
    count at least `lines_inserted` rows of `reservation_lines`. A server process reports
    its counters as it exits, and otherwise only when idle for a while (up to 10 s)."""
    query = sa.text(
        "SELECT relname, seq_scan, n_tup_ins FROM pg_stat_user_tables"
        " WHERE relname IN ('reservations', 'reservation_lines', 'preorders')"
    )
    for _ in range(200):
        with engine.connect() as conn:
            found = {name: (scans, ins) for name, scans, ins in conn.execute(query).all()}
        if found["reservation_lines"][1] >= lines_inserted:
            return {name: scans for name, (scans, _) in found.items()}
        time.sleep(0.05)
    raise AssertionError(f"the statistics never counted {lines_inserted} lines: {found}")


def test_a_batch_finds_its_orders_by_key_on_tables_planned_while_they_were_empty() -> None:
    """A new ledger: the sink's statements are prepared and planned while its tables are
    nearly empty, and PostgreSQL keeps such a plan until the tables are next analyzed
    (autovacuum: a minute or more). Planned so, a batch read the order tables whole to
    recompute its orders: a cost per batch that grew with the ledger. Every row a batch
    touches has a key, so its statements find them by their indexes whatever the
    statistics say."""
    with fresh_database() as url:
        sink, engine = make_sink(url), make_engine(url)
        try:

            def reserve(i: int) -> Entry:
                row = [["A", "north", 0, 1, 1_000_000, i + 1, 0, i + 1]]
                return part("reserve", f"o{i}", "k", [["A", "north", 1]], row, T0 + i, ofp="f")

            for i in range(12):  # prepared after 5 runs; generic after 5 more
                apply(sink, reserve(i))
            bulk = make_engine(url)  # the ledger grows; nothing analyzes it
            with bulk.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO reservations (order_id, status, expires_at, token,"
                        " created_at, updated_at) SELECT 'bulk' || i, 'active', now(), 'k',"
                        " now(), now() FROM generate_series(1, 20000) i"
                    )
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO reservation_lines (order_id, token, sku, position,"
                        " location, qty, part_fingerprint, status, expires_at) SELECT"
                        " 'bulk' || i, 'k', 'A', 0, 'north', 1, 'f', 'active', now()"
                        " FROM generate_series(1, 20000) i"
                    )
                )
            bulk.dispose()  # its server process exits, reporting the 20,000 rows
            # The sink's 12 lines may not be reported yet; its scans so far count in
            # `after` either way.
            before = _table_counters(engine, 20000)

            for i in range(12, 15):
                apply(sink, reserve(i))
            sink.close()  # its server process reports its counters as it exits
            after = _table_counters(engine, 12 + 20000 + 3)
        finally:
            engine.dispose()

    assert {name: after[name] - before[name] for name in after} == {
        "reservations": 0,
        "reservation_lines": 0,
        "preorders": 0,
    }


def test_a_batchs_planner_settings_end_with_its_transaction() -> None:
    """Behind a pooler that hands each transaction another server session, a setting
    left on the session would miss the sink's next batches and stay with whoever gets the
    session next: the keyed plans are the batch transaction's own."""
    with fresh_database() as url:
        sink = make_sink(url)
        assert isinstance(sink, PgSink)
        try:
            apply(sink, movement("r1", "A", "north", 10, 10, 1))
            session = sink._connection()  # the server session the batch ran in

            settings = [
                session.execute(f"SHOW {name}").fetchone()
                for name in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
            ]
            session.rollback()
        finally:
            sink.close()

    assert settings == [("on",), ("on",), ("on",)]
