"""Incoming stock and pre-orders come back with `warmup` after Redis lost them: the stock
hash's `p:`/`q:`/`n:` fields, the pre-order book, the closed incoming records, the refs'
index and each part's pre-order lines are exactly what the scripts had written, a SKU
Redis holds at a newer version is kept, `verify` names each field that differs, and the
archive answers a finished order's pre-order lines.

The ledger is built from stream entries as the scripts write them (tests/support/preorder_events),
applied through the sink: a story of one SKU whose versions and levels follow each other,
so that verify's other comparisons (levels, ledger sums and chain) agree too."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
import sqlalchemy as sa

from inventory_cache.archive import OrderArchive
from inventory_cache.keys import Keys
from inventory_cache.models import ReservedLine
from inventory_cache.verify import Difference, verify
from inventory_cache.warmup import warmup
from persistence.db import make_engine, migrate
from persistence.events import Entry, parse
from persistence.ledger import build
from persistence.sink import make_sink
from tests.support import preorder_events as pe
from tests.support.redis_state import flush_prefix
from tests.support.services import make_settings

T0 = 1_800_000_000_000
DAY = 86_400_000
E1, E2, E3, E4 = (T0 + n * DAY for n in (1, 2, 3, 4))
EXP = T0 + 7_200_000
NOW = T0 + 60_000
RETENTION_MS = 86_400_000


def ts(v: int) -> int:
    return T0 + v * 1000


def lv(sku: str, loc: str, doh: int, dl: int, oh: int, lk: int, v: int) -> list[Any]:
    return pe.row(sku, loc, doh, dl, oh, lk, v)


def a_row(v: int, oh: int, lk: int, doh: int = 0, dl: int = 0) -> list[Any]:
    return lv("A", "north", doh, dl, oh, lk, v)


def a_incoming(
    ref: str, reason: str, record: list[Any], level: list[Any], pre: list[Any] | None = None
) -> dict[str, str]:
    return pe.incoming(ref, reason, ["A", "north", *record], level, ts(level[7]), pre)


def a_reserve(order: str, v: int, lines: list[Any], rows: list[Any], pre: list[Any]) -> Any:
    return pe.part("reserve", order, f"k{order[1:]}", lines, rows, ts(v), EXP, pre=pre)


# SKU A at `north`, version by version (on_hand, locked after each):
STORY_A = [
    pe.inbound("A", "north", 5, 5, 1, ts(1)),  # v1: 5 on hand
    pe.preorder_limit("A", "north", 10, a_row(2, 5, 0), ts(2)),  # v2
    a_incoming("po1", "incoming_create", [8, E1, "open", 0], a_row(3, 5, 0)),  # v3
    a_incoming("po2", "incoming_create", [4, E2, "open", 0], a_row(4, 5, 0)),  # v4
    # v5: o1 locks 5 and pre-orders 3 (seq 1); v6, v7: o2 and o3 pre-order 2 and 4 only
    a_reserve(
        "o1",
        5,
        [["A", "north", 5]],
        [a_row(5, 5, 5, dl=5), a_row(5, 5, 5)],
        [["A", "north", 3, 1, E1]],
    ),
    a_reserve("o2", 6, [], [a_row(6, 5, 5)], [["A", "north", 2, 2, E1]]),
    a_reserve("o3", 7, [], [a_row(7, 5, 5)], [["A", "north", 4, 3, E1]]),
    # v8: po1 comes (8): o1's and o2's lines become locks (5), o3's (4) still awaits po2
    a_incoming(
        "po1",
        "incoming_receive",
        [8, E1, "received", 8],
        a_row(8, 13, 10, doh=8, dl=5),
        [["o1", "k1", 1, "north", 3, E1, "locked"], ["o2", "k2", 2, "north", 2, E1, "locked"]],
    ),
    # v9: o2 cancelled: its converted line's lock goes
    pe.part(
        "cancel",
        "o2",
        "k2",
        [],
        [a_row(9, 13, 8, dl=-2)],
        ts(9),
        EXP,
        pre=[["A", "north", 2, 2, E1]],
    ),
    # v10: po2 shrinks to 2: o3's 4 lose their cover
    a_incoming(
        "po2",
        "incoming_change",
        [2, E2, "open", 0],
        a_row(10, 13, 8),
        [["o3", "k3", 3, "north", 4, E1, "uncovered"]],
    ),
    a_incoming("po3", "incoming_create", [6, E3, "open", 0], a_row(11, 13, 8)),  # v11
    a_reserve("o4", 12, [], [a_row(12, 13, 8)], [["A", "north", 1, 4, E2]]),  # v12
    a_incoming("po4", "incoming_create", [3, E4, "open", 0], a_row(13, 13, 8)),  # v13
    a_incoming("po4", "incoming_cancel", [3, E4, "cancelled", 0], a_row(14, 13, 8)),  # v14
]
# SKU B: a limit and an open incoming record, no pre-order ever.
STORY_B = [
    pe.preorder_limit("B", "south", 5, lv("B", "south", 0, 0, 0, 0, 1), ts(1)),
    pe.incoming(
        "pb1",
        "incoming_create",
        ["B", "south", 7, E2, "open", 0],
        lv("B", "south", 0, 0, 0, 0, 2),
        ts(2),
    ),
]
# SKU C: what PostgreSQL holds; Redis will hold a newer version of it.
STORY_C = [
    pe.inbound("C", "north", 3, 3, 1, ts(1)),
    pe.preorder_limit("C", "north", 4, lv("C", "north", 0, 0, 3, 0, 2), ts(2)),
    pe.incoming(
        "pc1",
        "incoming_create",
        ["C", "north", 2, E1, "open", 0],
        lv("C", "north", 0, 0, 3, 0, 3),
        ts(3),
    ),
]


def into_ledger(url: str, keys: Keys, stories: list[list[dict[str, str]]]) -> None:
    """Each story's entries as the worker would apply them; then no ledger marks: these
    entries never were in this Redis's streams (so no group is taken as behind)."""
    n = itertools.count(1)
    events = [
        parse(Entry(keys.group_of(orjson.loads(f["rows"])[0][0]), f"{T0}-{next(n)}", _raw(f)))
        for story in stories
        for f in story
    ]
    sink = make_sink(url)
    try:
        sink.apply(build(events, RETENTION_MS))
    finally:
        sink.close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ledger_marks"))
    engine.dispose()


def _raw(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k.decode(): v.decode() for k, v in value.items()}
    return value.decode() if isinstance(value, bytes) else value


def j(value: Any) -> str:
    return orjson.dumps(value).decode()


@pytest.fixture
def restored(pg: tuple[str, Any], prefix: str) -> tuple[str, Any, Keys, Any]:
    url, client = pg
    settings = make_settings(prefix)
    keys = Keys(prefix, settings.slot_groups)
    into_ledger(url, keys, [STORY_A, STORY_B, STORY_C])
    flush_prefix(client, prefix)
    # Since the flush, C changed in Redis (version 5 > PostgreSQL's 3): it must be kept.
    client.hset(
        keys.stock("C"),
        mapping={"o:north": 3, "l:north": 0, "s:north": 0, "v": 5, "p:north": 9, "n:pc2": "x"},
    )
    client.hset(keys.preorders("C"), mapping={"#": 7})
    engine = make_engine(url)
    report = warmup(client, engine, settings, now_ms=NOW)
    engine.dispose()
    return url, client, keys, report


STOCK_A = {
    "o:north": "13",
    "l:north": "8",
    "s:north": "0",
    "v": "14",
    "p:north": "10",
    "q:north": "1",  # o4's awaiting line
    "n:po2": j(["north", 2, E2]),
    "n:po3": j(["north", 6, E3]),
}
BOOK_A = {
    "#": "4",  # o2's line is gone with its order, its number stays taken
    "1": j(["o1", "k1", "north", 3, E1, "l"]),
    "3": j(["o3", "k3", "north", 4, E1, "u"]),
    "4": j(["o4", "k4", "north", 1, E2, "a"]),
}
CLOSED_A = {
    "po1": j(["north", 8, E1, "received", 8]),
    "po4": j(["north", 3, E4, "cancelled", 0]),
}
PART_O3 = {
    "st": "active",
    "fp": "pfp-o3",
    "tok": "k3",
    "at": str(ts(7)),
    "exp": str(EXP),
    "lines": "[]",  # as apply_part writes a part of pre-order lines only
    "ofp": "ofp-o3",
    "pre": j([["A", "north", 4, 3, E1]]),
}


def test_warmup_restores_the_preorder_state_exactly(
    restored: tuple[str, Any, Keys, Any],
) -> None:
    _, client, keys, report = restored
    assert (report.preorder_books, report.incoming_records, report.kept) == (3, 6, 2)
    assert text(client.hgetall(keys.stock("A"))) == STOCK_A
    assert text(client.hgetall(keys.preorders("A"))) == BOOK_A
    assert text(client.hgetall(keys.incoming_closed("A"))) == CLOSED_A
    assert text(client.hgetall(keys.stock("B"))) == {
        "o:south": "0",
        "l:south": "0",
        "s:south": "0",
        "v": "2",
        "p:south": "5",
        "n:pb1": j(["south", 7, E2]),
    }
    assert client.exists(keys.preorders("B"), keys.incoming_closed("B")) == 0
    refs = ["po1", "po2", "po3", "po4", "pb1", "pc1"]
    assert [text(client.get(keys.incoming_index(r))) for r in refs] == list("AAAABC")

    g = keys.group_of("A")
    part = {o: text(client.hgetall(keys.part(g, o))) for o in ("o1", "o2", "o3", "o4")}
    assert part["o1"] == {
        "st": "active",
        "fp": "pfp-o1",
        "tok": "k1",
        "at": str(ts(5)),
        "exp": str(EXP),
        "lines": j([["A", "north", 5]]),
        "ofp": "ofp-o1",
        "pre": j([["A", "north", 3, 1, E1]]),
    }
    assert part["o3"] == PART_O3
    assert part["o4"]["pre"] == j([["A", "north", 1, 4, E2]])
    # o2 was cancelled within the retention: kept for retries, with its lines
    assert (part["o2"]["st"], part["o2"]["done"], part["o2"]["pre"]) == (
        "cancelled",
        str(ts(9)),
        j([["A", "north", 2, 2, E1]]),
    )
    assert {m.decode() for m in client.zrange(keys.expiry(g), 0, -1)} == {"o1", "o3", "o4"}
    index = {o: text(client.hgetall(keys.order_index(o))) for o in ("o1", "o3")}
    assert index["o3"] == {
        "fp": "ofp-o3",
        "tok": "k3",
        "at": str(ts(7)),
        "st": "active",
        "exp": str(EXP),
        "body": j({"groups": {str(g): ["A"]}}),
        "pre": "1",  # order_decide-2.lua refuses a ship until its lines are converted
    }
    assert index["o1"]["pre"] == "1"


def test_the_embedded_demo_restores_the_preorder_state_from_sqlite(
    prefix: str, tmp_path: Path
) -> None:
    """fakeredis and SQLite, as `inventory-cache demo` runs without any server."""
    url = f"sqlite+pysqlite:///{tmp_path / 'demo.sqlite3'}"
    migrate(url)
    settings = make_settings(prefix, redis_url=None)
    keys = Keys(prefix, settings.slot_groups)
    into_ledger(url, keys, [STORY_A, STORY_B])
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    engine = make_engine(url)
    try:
        warmup(client, engine, settings, now_ms=NOW)
        assert text(client.hgetall(keys.stock("A"))) == STOCK_A
        assert text(client.hgetall(keys.preorders("A"))) == BOOK_A
        assert text(client.hgetall(keys.incoming_closed("A"))) == CLOSED_A
        assert text(client.hgetall(keys.part(keys.group_of("A"), "o3"))) == PART_O3
        assert verify(client, engine, settings, wait_s=0) == []
    finally:
        engine.dispose()


def test_a_sku_redis_holds_at_a_newer_version_is_kept_whole(
    restored: tuple[str, Any, Keys, Any],
) -> None:
    _, client, keys, _ = restored
    assert text(client.hgetall(keys.stock("C"))) == {
        "o:north": "3",
        "l:north": "0",
        "s:north": "0",
        "v": "5",
        "p:north": "9",
        "n:pc2": "x",
    }
    assert text(client.hgetall(keys.preorders("C"))) == {"#": "7"}


def test_warmup_again_changes_nothing(restored: tuple[str, Any, Keys, Any]) -> None:
    url, client, keys, _ = restored
    before = {
        k: text(client.hgetall(k))
        for k in (keys.stock("A"), keys.preorders("A"), keys.part(keys.group_of("A"), "o3"))
    }
    engine = make_engine(url)
    report = warmup(client, engine, make_settings(keys.prefix), now_ms=NOW)
    engine.dispose()
    assert report.preorder_books == 3
    assert {k: text(client.hgetall(k)) for k in before} == before


def test_verify_is_clean_then_names_each_preorder_field_that_differs(
    restored: tuple[str, Any, Keys, Any],
) -> None:
    url, client, keys, _ = restored
    settings = make_settings(keys.prefix)
    engine = make_engine(url)
    # C is newer in Redis than in PostgreSQL (its events not written yet): set it back.
    client.delete(keys.stock("C"), keys.preorders("C"))
    client.hset(
        keys.stock("C"),
        mapping={"o:north": 3, "l:north": 0, "s:north": 0, "v": 3, "p:north": 4},
    )
    client.hset(keys.stock("C"), "n:pc1", j(["north", 2, E1]))
    try:
        assert verify(client, engine, settings, wait_s=0) == []

        client.hset(keys.stock("A"), "n:po2", j(["north", 3, E2]))
        client.hset(keys.stock("A"), "p:north", 11)
        client.hset(keys.stock("A"), "q:north", 2)
        client.hset(keys.preorders("A"), "4", j(["o4", "k4", "north", 1, E2, "l"]))
        client.hset(keys.preorders("A"), "#", 5)
        client.delete(keys.incoming_index("po1"))
        client.hdel(keys.incoming_closed("A"), "po4")
        client.hdel(keys.stock("B"), "p:south")

        assert verify(client, engine, settings, wait_s=0) == [
            Difference(
                "incoming",
                "A po2",
                ("A", "north", 3, E2, "open", 0),
                ("A", "north", 2, E2, "open", 0),
            ),
            Difference("incoming", "A po4", None, ("A", "north", 3, E4, "cancelled", 0)),
            Difference("incoming_index", "A po1", None, "A"),
            Difference("preorder_limit", "A@north", 11, 10),
            Difference("preorder_limit", "B@south", None, 5),
            Difference("preorders_awaiting", "A@north", 2, 1),
            Difference(
                "preorder",
                "A #4",
                ("o4", "k4", "north", 1, E2, "l"),
                ("o4", "k4", "north", 1, E2, "a"),
            ),
            Difference("preorder_seq", "A", 5, 4),
        ]
    finally:
        engine.dispose()


def test_verify_names_a_part_whose_preorder_lines_differ(
    restored: tuple[str, Any, Keys, Any],
) -> None:
    url, client, keys, _ = restored
    g = keys.group_of("A")
    client.hset(keys.part(g, "o4"), "pre", j([["A", "north", 2, 4, E2]]))
    engine = make_engine(url)
    try:
        found = [
            d
            for d in verify(client, engine, make_settings(keys.prefix), wait_s=0)
            if d.kind == "reservation"
        ]
    finally:
        engine.dispose()
    assert found == [
        Difference(
            "reservation",
            f"o4 (group {g})",
            ("k4", EXP, [], ("pre", [["A", "north", 2, 4, E2]])),
            ("k4", EXP, [], ("pre", [["A", "north", 1, 4, E2]])),
        )
    ]


async def test_the_archive_answers_a_finished_orders_preorder_lines_after_its_lines(
    pg: tuple[str, Any], prefix: str
) -> None:
    url, _ = pg
    keys = Keys(prefix, 16)
    g = keys.group_of("A")
    same = next(s for s in (f"D{n}" for n in range(100)) if keys.group_of(s) == g)
    other = next(s for s in (f"E{n}" for n in range(100)) if keys.group_of(s) != g)
    # o5: 2 locked units of A; pre-ordered, in the order the part took them (its lines
    # sorted by SKU): 2 of A (A's 7th number), 1 of `same` (its 3rd) in A's group, and
    # 1 of `other` in another group; shipped once converted.
    lines = [["A", "north", 2]]
    pre = [["A", "north", 2, 7, E1], [same, "north", 1, 3, E2]]
    pre_other = [[other, "north", 1, 1, E3]]
    o_rows = [lv(other, "north", 0, 0, 0, 0, v) for v in (1, 2)]
    into_ledger(
        url,
        keys,
        [
            [
                pe.part(
                    "reserve", "o5", "k5", lines, [a_row(20, 9, 2, dl=2)], ts(20), EXP, pre=pre
                ),
                pe.part("reserve", "o5", "k5", [], o_rows[:1], ts(20), EXP, pre=pre_other),
                pe.part("ship", "o5", "k5", lines, [a_row(21, 7, 0, -2, -2)], ts(21), EXP, pre=pre),
                pe.part("ship", "o5", "k5", [], o_rows[1:], ts(21), EXP, pre=pre_other),
                # o6: pre-order lines only, cancelled
                pe.part(
                    "reserve",
                    "o6",
                    "k6",
                    [],
                    [a_row(22, 7, 0)],
                    ts(22),
                    EXP,
                    pre=[["A", "north", 1, 8, E2]],
                ),
                pe.part(
                    "cancel",
                    "o6",
                    "k6",
                    [],
                    [a_row(23, 7, 0)],
                    ts(23),
                    EXP,
                    pre=[["A", "north", 1, 8, E2]],
                ),
            ]
        ],
    )
    engine = make_engine(url)
    archive = OrderArchive(engine, keys)
    try:
        o5 = archive._order("o5")
        o6 = archive._order("o6")
    finally:
        await archive.aclose()
        engine.dispose()
    assert o5 is not None and o6 is not None
    a_part = [
        ReservedLine("A", 2, "north", preorder=True, expected_at=E1),
        ReservedLine(same, 1, "north", preorder=True, expected_at=E2),
    ]
    other_part = [ReservedLine(other, 1, "north", preorder=True, expected_at=E3)]
    parts = [a_part, other_part] if g < keys.group_of(other) else [other_part, a_part]
    assert (o5.reservation.status, o5.fingerprint) == ("shipped", "ofp-o5")
    assert o5.reservation.lines == [ReservedLine("A", 2, "north"), *parts[0], *parts[1]]
    assert (o6.reservation.status, o6.reservation.lines) == (
        "cancelled",
        [ReservedLine("A", 1, "north", preorder=True, expected_at=E2, preorder_status=None)],
    )


def test_healing_a_group_clears_its_books_and_closed_records(sync_redis: Any, prefix: str) -> None:
    """A behind group is rebuilt whole from PostgreSQL: no stale book may survive."""
    from inventory_cache import behind

    keys = Keys(prefix, 16)
    a = "A"
    b = next(s for s in (f"B{n}" for n in range(100)) if keys.group_of(s) != keys.group_of(a))
    for sku in (a, b):
        sync_redis.hset(keys.preorders(sku), "#", 1)
        sync_redis.hset(keys.incoming_closed(sku), "po", "x")
        sync_redis.set(keys.incoming_index(f"po-{sku}"), sku)

    behind.clear_state(sync_redis, keys, [keys.group_of(a)])

    assert sync_redis.exists(keys.preorders(a), keys.incoming_closed(a)) == 0
    assert sync_redis.exists(keys.preorders(b), keys.incoming_closed(b)) == 2
    # a ref's SKU never changes: its index stays wherever its group
    assert sync_redis.exists(*(keys.incoming_index(f"po-{s}") for s in (a, b))) == 2
