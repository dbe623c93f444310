"""Incoming stock and pre-orders reach PostgreSQL (and the demo's SQLite) through the
event stream: both sinks keep `incoming_stock`, `preorder_policies` and `preorders` the
same whether an event arrives twice or out of order, and malformed entries are refused
(and dead-lettered) with their fault named."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from persistence.db import make_engine
from persistence.events import Entry, MalformedEvent, parse, parse_checked, parse_fast
from persistence.ledger import build
from persistence.sink import Sink, datetime_to_ms, make_sink
from tests.support import preorder_events as pe
from tests.support.services import make_settings

T0 = 1_800_000_000_000
E1, E2 = T0 + 86_400_000, T0 + 2 * 86_400_000
EXP = T0 + 3_600_000
RETENTION_MS = 7 * 86_400_000


_seq = itertools.count(1)


def entry(fields: dict[str, str]) -> Entry:
    return Entry(3, f"{T0}-{next(_seq)}", {k.encode(): v.encode() for k, v in fields.items()})


def apply(sink: Sink, *fields: dict[str, str]) -> None:
    sink.apply(build([parse(entry(f)) for f in fields], RETENTION_MS))


def rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def ms(engine: sa.Engine, sql: str) -> list[tuple[int | None, ...]]:
    """Rows of timestamps in ms (SQLite hands back text, PostgreSQL datetimes)."""
    with engine.connect() as conn:
        return [
            tuple(
                None
                if v is None
                else datetime_to_ms(datetime.fromisoformat(v) if isinstance(v, str) else v)
                for v in r
            )
            for r in conn.execute(sa.text(sql))
        ]


# A story of one SKU at one location (its stock-hash version in each row).
def create(ref: str, qty: int, exp: int, v: int, oh: int = 5, lk: int = 0) -> dict[str, str]:
    return pe.incoming(
        ref,
        "incoming_create",
        ["A", "north", qty, exp, "open", 0],
        pe.row("A", "north", 0, 0, oh, lk, v),
        T0 + v,
    )


def change(ref: str, qty: int, exp: int, v: int, pre: list[Any] | None = None) -> dict[str, str]:
    return pe.incoming(
        ref,
        "incoming_change",
        ["A", "north", qty, exp, "open", 0],
        pe.row("A", "north", 0, 0, 5, 0, v),
        T0 + v,
        pre,
    )


def receive(
    ref: str, qty: int, exp: int, got: int, conv: int, v: int, pre: list[Any]
) -> dict[str, str]:
    return pe.incoming(
        ref,
        "incoming_receive",
        ["A", "north", qty, exp, "received", got],
        pe.row("A", "north", got, conv, 5 + got, conv, v),
        T0 + v,
        pre,
    )


INCOMING = "SELECT ref, sku, location, qty, status, received_qty, version FROM incoming_stock"


def test_an_incoming_record_keeps_its_newest_version_in_any_order(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    created, changed = create("po1", 8, E1, 2), change("po1", 10, E2, 3)
    received = receive("po1", 10, E2, 9, 0, 4, [])
    apply(sink, received)
    apply(sink, changed, created)
    apply(sink, created, changed, received)
    assert rows(engine, INCOMING) == [("po1", "A", "north", 10, "received", 9, 4)]
    # expected_at of the version that won (the change moved it to E2), and its time
    assert ms(engine, "SELECT expected_at, updated_at FROM incoming_stock") == [(E2, T0 + 4)]
    assert rows(
        engine,
        "SELECT op_id, type, reason, ref, delta_on_hand, on_hand_after, version FROM movements"
        " ORDER BY version",
    ) == [
        ("incoming:po1:2", "incoming", "incoming_create", "po1", 0, 5, 2),
        ("incoming:po1:3", "incoming", "incoming_change", "po1", 0, 5, 3),
        ("incoming:po1:4", "incoming", "incoming_receive", "po1", 9, 14, 4),
    ]
    assert rows(engine, "SELECT on_hand, version FROM stock_levels") == [(14, 4)]


def test_a_preorder_limit_keeps_its_newest_version_in_any_order(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    first = pe.preorder_limit("A", "north", 10, pe.row("A", "north", 0, 0, 5, 0, 2), T0 + 2)
    second = pe.preorder_limit("A", "north", 0, pe.row("A", "north", 0, 0, 5, 0, 3), T0 + 3)
    other = pe.preorder_limit("A", "south", 4, pe.row("A", "south", 0, 0, 0, 0, 4), T0 + 4)
    apply(sink, second, other)
    apply(sink, first)
    apply(sink, first, second, other)
    assert rows(
        engine,
        "SELECT sku, location, preorder_limit, version FROM preorder_policies ORDER BY location",
    ) == [("A", "north", 0, 3), ("A", "south", 4, 4)]
    assert ms(engine, "SELECT updated_at FROM preorder_policies ORDER BY location") == [
        (T0 + 3,),
        (T0 + 4,),
    ]
    assert rows(engine, "SELECT type, reason, count(*) FROM movements GROUP BY type, reason") == [
        ("policy", "preorder_limit", 3)
    ]


# o1 holds 2 locked units and pre-orders 3 (seq 1); o2 pre-orders 4 (seq 2) only.
RESERVE_O1 = pe.part(
    "reserve",
    "o1",
    "k1",
    [["A", "north", 2]],
    [pe.row("A", "north", 0, 2, 5, 2, 5), pe.row("A", "north", 0, 0, 5, 2, 5)],
    T0 + 5,
    EXP,
    pre=[["A", "north", 3, 1, E1]],
)
RESERVE_O2 = pe.part(
    "reserve",
    "o2",
    "k2",
    [],
    [pe.row("A", "north", 0, 0, 5, 2, 6)],
    T0 + 6,
    EXP,
    pre=[["A", "north", 4, 2, E1]],
)
# the receipt converts o1's line into a lock and leaves o2's uncovered
RECEIPT = pe.incoming(
    "po1",
    "incoming_receive",
    ["A", "north", 8, E1, "received", 3],
    pe.row("A", "north", 3, 3, 8, 5, 7),
    T0 + 7,
    [["o1", "k1", 1, "north", 3, E1, "locked"], ["o2", "k2", 2, "north", 4, E1, "uncovered"]],
)
CANCEL_O2 = pe.part(
    "cancel",
    "o2",
    "k2",
    [],
    [pe.row("A", "north", 0, 0, 8, 5, 8)],
    T0 + 8,
    EXP,
    pre=[["A", "north", 4, 2, E1]],
)
SHIP_O1 = pe.part(
    "ship",
    "o1",
    "k1",
    [["A", "north", 2]],
    [pe.row("A", "north", -2, -2, 6, 3, 9), pe.row("A", "north", -3, -3, 3, 0, 9)],
    T0 + 9,
    EXP,
    pre=[["A", "north", 3, 1, E1]],
)
PREORDERS = (
    "SELECT sku, seq, order_id, token, location, qty, status, part_fingerprint"
    " FROM preorders ORDER BY sku, seq"
)
PREORDER_TIMES = (
    "SELECT expected_at, reserved_at, updated_at, expires_at FROM preorders ORDER BY sku, seq"
)


@pytest.mark.parametrize(
    "batches",
    [
        [[RESERVE_O1, RESERVE_O2], [RECEIPT]],
        [[RECEIPT], [RESERVE_O2, RESERVE_O1]],
        [[RECEIPT, RESERVE_O1], [RECEIPT], [RESERVE_O2, RESERVE_O2]],
    ],
    ids=["in-order", "receipt-first", "twice"],
)
def test_preorder_lines_move_up_by_rank_in_any_order(
    ledger_sink: tuple[Sink, sa.Engine], batches: list[list[dict[str, str]]]
) -> None:
    sink, engine = ledger_sink
    for batch in batches:
        apply(sink, *batch)
    assert rows(engine, PREORDERS) == [
        ("A", 1, "o1", "k1", "north", 3, "locked", "pfp-o1"),
        ("A", 2, "o2", "k2", "north", 4, "uncovered", "pfp-o2"),
    ]
    assert ms(engine, PREORDER_TIMES) == [(E1, T0 + 5, T0 + 7, EXP), (E1, T0 + 6, T0 + 7, EXP)]
    # a part of pre-order lines only is an active reservation all the same
    assert rows(engine, "SELECT order_id, status, token FROM reservations ORDER BY 1") == [
        ("o1", "active", "k1"),
        ("o2", "active", "k2"),
    ]
    assert rows(engine, "SELECT order_id, qty FROM reservation_lines") == [("o1", 2)]


def test_a_settled_part_gives_its_preorder_lines_their_final_status_for_good(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    apply(sink, CANCEL_O2, SHIP_O1)
    apply(sink, RECEIPT)  # older: cannot take the final status back
    apply(sink, RESERVE_O1, RESERVE_O2)
    assert rows(engine, PREORDERS) == [
        ("A", 1, "o1", "k1", "north", 3, "shipped", "pfp-o1"),
        ("A", 2, "o2", "k2", "north", 4, "cancelled", "pfp-o2"),
    ]
    assert ms(engine, PREORDER_TIMES) == [(E1, T0 + 5, T0 + 9, EXP), (E1, T0 + 6, T0 + 8, EXP)]
    assert rows(engine, "SELECT order_id, status FROM reservations ORDER BY 1") == [
        ("o1", "shipped"),
        ("o2", "cancelled"),
    ]
    assert ms(engine, "SELECT updated_at FROM reservations ORDER BY order_id") == [
        (T0 + 9,),
        (T0 + 8,),
    ]
    assert rows(
        engine,
        "SELECT op_id, delta_on_hand, delta_locked, locked_after FROM movements"
        " WHERE op_id LIKE 'ship:%' OR op_id LIKE 'cancel:%' ORDER BY version",
    ) == [("cancel:o2:k2", 0, 0, 5), ("ship:o1:k1", -5, -5, 0)]


def test_a_released_attempt_leaves_the_retry_of_preorder_lines_active(
    ledger_sink: tuple[Sink, sa.Engine],
) -> None:
    sink, engine = ledger_sink
    pre1, pre2 = [["A", "north", 1, 1, E1]], [["A", "north", 1, 2, E1]]
    first = pe.part(
        "reserve", "o1", "k1", [], [pe.row("A", "north", 0, 0, 5, 0, 2)], T0 + 2, EXP, pre=pre1
    )
    undo = pe.part(
        "release", "o1", "k1", [], [pe.row("A", "north", 0, 0, 5, 0, 3)], T0 + 3, EXP, pre=pre1
    )
    retry = pe.part(
        "reserve", "o1", "k2", [], [pe.row("A", "north", 0, 0, 5, 0, 4)], T0 + 4, EXP, pre=pre2
    )
    apply(sink, retry, undo)
    apply(sink, first)
    assert rows(engine, "SELECT seq, token, status FROM preorders ORDER BY seq") == [
        (1, "k1", "released"),
        (2, "k2", "awaiting"),
    ]
    assert rows(engine, "SELECT status, token FROM reservations") == [("active", "k2")]


GOOD = [
    create("po1", 8, E1, 2),
    change("po1", 10, E2, 3, [["o2", "k2", 2, "north", 4, E1, "uncovered"]]),
    RECEIPT,
    RESERVE_O1,
    RESERVE_O2,
    CANCEL_O2,
    pe.preorder_limit("A", "north", 10, pe.row("A", "north", 0, 0, 5, 0, 2), T0 + 2),
]


def test_both_parsers_read_the_new_fields_alike() -> None:
    entries = [entry(f) for f in GOOD]
    fast = [parse_fast(e) for e in entries]
    assert fast == [parse_checked(e) for e in entries]
    assert fast[1].incoming == ("po1", "A", "north", 10, E2, "open", 0, 3, T0 + 3)
    assert fast[1].preorders == (
        ("A", 2, "o2", "k2", "north", 4, E1, "uncovered", None, T0 + 3, None, None),
    )
    assert fast[4].preorders == (
        ("A", 2, "o2", "k2", "north", 4, E1, "awaiting", T0 + 6, T0 + 6, "pfp-o2", EXP),
    )
    assert fast[5].preorders[0][7:9] == ("cancelled", None)
    assert fast[6].preorder_limit == ("A", "north", 10, 2, T0 + 2)


def _with(fields: dict[str, str], **changes: str | None) -> dict[str, str]:
    out = {k: v for k, v in fields.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


MALFORMED = [
    (_with(GOOD[0], **{"in": None}), "missing field 'in'"),
    (_with(GOOD[0], **{"in": '["A","north",8]'}), "field 'in' is not"),
    (_with(GOOD[0], **{"in": '["A","north",8,1,"lost",0]'}), "unknown incoming status 'lost'"),
    (_with(GOOD[0], **{"in": '["A","north","many",1,"open",0]'}), "incoming qty is not"),
    (_with(GOOD[0], **{"in": '["A","north",-1,1,"open",0]'}), "a negative incoming quantity"),
    (_with(GOOD[0], **{"in": '["A","south",8,1,"open",0]'}), "exactly one row, of A@south"),
    (_with(GOOD[0], ref=None), "missing field 'ref'"),
    (_with(GOOD[0], reason="incoming_lost"), "unknown incoming reason 'incoming_lost'"),
    (_with(GOOD[1], pre='[["o2","k2",2,"north",4,1]]'), "a pre-order change is not"),
    (_with(GOOD[1], pre='[["o2","k2",2,"north",4,1,"gone"]]'), "unknown pre-order state"),
    (_with(GOOD[1], pre='[["o2","k2",0,"north",4,1,"locked"]]'), "seq is not positive"),
    (_with(GOOD[4], pre='[["A","north",4,2]]'), "a pre-order line is not"),
    (_with(GOOD[4], pre='[["A","north",4,"x",1]]'), "pre-order seq is not an integer"),
    (_with(GOOD[4], pre="[[1"), "field 'pre' is not JSON"),
    (_with(pe.inbound("A", "north", 1, 1, 1, T0), pre="[]"), "without a reservation part"),
    (_with(pe.inbound("A", "north", 1, 1, 1, T0), **{"in": "[]"}), "an incoming record on"),
    (_with(GOOD[6], pl=None), "missing field 'pl'"),
    (_with(GOOD[6], pl='["A","north"]'), "field 'pl' is not"),
    (_with(GOOD[6], pl='["A","north",-2]'), "a negative pre-order limit"),
    (_with(GOOD[6], pl='["A","south",2]'), "no row of A@south"),
    (_with(pe.inbound("A", "north", 1, 1, 1, T0), pl='["A","north",2]'), "a pre-order limit on"),
]


@pytest.mark.parametrize(("fields", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_incoming_and_preorder_fields_are_refused_and_named(
    fields: dict[str, str], reason: str
) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse(entry(fields))


def test_the_worker_dead_letters_a_malformed_incoming_entry_and_writes_the_rest(
    pg: tuple[str, Any], prefix: str
) -> None:
    from inventory_cache.keys import Keys
    from inventory_cache.worker import Worker, WorkerConfig

    url, client = pg
    settings = make_settings(prefix)
    keys = Keys(prefix, settings.slot_groups)
    stream = keys.events(keys.group_of("A"))
    sink, engine = make_sink(url), make_engine(url)
    try:
        w = Worker(client, sink, settings, WorkerConfig("w1", claim_idle_ms=50, max_deliveries=2))
        w.ensure_groups()
        client.xadd(stream, GOOD[0])
        bad = client.xadd(stream, _with(GOOD[1], pre='[["o2","k2",2,"north",4,1,"gone"]]'))
        client.xadd(stream, GOOD[2])
        w.run_until_idle(10)
        dead = client.xrange(keys.dead_letters())
        assert [(f[b"dl_id"], f[b"dl_error"]) for _, f in dead] == [
            (bad, b"malformed: unknown pre-order state 'gone'")
        ]
        assert rows(engine, INCOMING) == [("po1", "A", "north", 8, "received", 3, 7)]
    finally:
        sink.close()
        engine.dispose()
