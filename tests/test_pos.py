"""POS batches (issue 6): each event alone, in order per SKU, idempotent, never refusing a sale.

Against real PostgreSQL (barcodes) and real Redis, fakeredis and a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select

from inventory_cache.barcodes import BarcodeStore, check_digit
from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotReady, ValidationError
from inventory_cache.models import LineRequest
from inventory_cache.pos import apply_batch, waves
from persistence.db import make_engine
from persistence.models import Movement, StockLevel
from tests.support.postgres import drain_into_ledger, fresh_database
from tests.support.services import make_settings


@pytest.fixture(scope="module")
def db() -> Iterator[Engine]:
    with fresh_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def barcodes(engine: StockEngine, db: Engine) -> BarcodeStore:
    return BarcodeStore(engine.client, engine.keys, db)


def fresh_code() -> str:
    """A valid EAN-13 no other test uses (the database is shared by the module)."""
    payload = str(uuid.uuid4().int)[:12]
    return payload + str(check_digit(payload))


def ev(event_id: str, type: str, qty: Any, **item: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type, "qty": qty, **item}


async def on_hand(engine: StockEngine, sku: str, location: str) -> int:
    return (await engine.stock(sku)).locations[location].on_hand


async def stream_rows(engine: StockEngine) -> list[tuple[str, list[Any]]]:
    """Every (type, row) in the event streams: what the ledger will be written from."""
    out = []
    for g in engine.keys.all_groups():
        for _, fields in await engine.client.xrange(engine.keys.events(g)):
            for row in orjson.loads(fields[b"rows"]):
                out.append((fields[b"t"].decode(), row))
    return out


async def test_sale_return_and_count_move_on_hand_and_count_records_the_difference(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    await engine.inbound(ref="po-1", sku="tee", location="store-1", qty=10)

    results = await apply_batch(
        engine,
        barcodes,
        location="store-1",
        events=[
            ev("e1", "sale", 3, sku="tee"),
            ev("e2", "return", 1, sku="tee"),
            ev("e3", "count", 6, sku="tee"),
            ev("e4", "count", 0, sku="tee"),
        ],
    )

    assert [(r.status, r.level and r.level.on_hand) for r in results] == [
        ("applied", 7),
        ("applied", 8),
        ("applied", 6),
        ("applied", 0),
    ]
    pos_rows = [(t, row[2], row[4]) for t, row in await stream_rows(engine) if t != "inbound"]
    # [type, delta_on_hand, on_hand_after]: the count is recorded as the difference.
    assert pos_rows == [
        ("pos_sale", -3, 7),
        ("pos_return", 1, 8),
        ("pos_count", -2, 6),
        ("pos_count", -6, 0),
    ]


async def test_a_sale_below_locked_is_applied_and_reported_as_oversold(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    await engine.inbound(ref="po-1", sku="phone", location="store-1", qty=2)
    await engine.reserve(order_id="web-1", lines=[LineRequest("phone", 2, "store-1")])

    [result] = await apply_batch(
        engine, barcodes, location="store-1", events=[ev("e1", "sale", 3, sku="phone")]
    )

    assert result.status == "applied"
    assert result.level is not None
    assert (result.level.on_hand, result.level.locked, result.level.available) == (-1, 2, 0)
    assert result.oversold == 2  # both units promised online are gone
    assert result.as_dict()["oversold"] == 2


async def test_a_batch_replayed_three_times_is_applied_once(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    code = fresh_code()
    await barcodes.put(code, "mug")
    await engine.inbound(ref="po-1", sku="mug", location="store-1", qty=50)
    batch = [
        ev("t1-1", "sale", 2, sku="mug"),
        ev("t1-2", "sale", 1, barcode=code),
        ev("t1-3", "return", 1, sku="mug"),
        ev("t1-4", "count", 40, barcode=code),
        ev("t1-5", "sale", 5, sku="mug"),
    ]
    first = await apply_batch(engine, barcodes, location="store-1", events=batch)
    entries = len(await stream_rows(engine))

    replays = [await apply_batch(engine, barcodes, location="store-1", events=batch)]
    replays += [await apply_batch(engine, barcodes, location="store-1", events=batch)]
    replays += [await apply_batch(engine, barcodes, location="store-1", events=batch)]

    assert [r.status for r in first] == ["applied"] * 5
    assert await on_hand(engine, "mug", "store-1") == 35
    assert len(await stream_rows(engine)) == entries
    for again in replays:
        assert [r.status for r in again] == ["replayed"] * 5
        # A replay answers the first result of each event.
        assert [r.level for r in again] == [
            r.level and dataclasses.replace(r.level, replayed=True) for r in first
        ]


async def test_a_bad_check_digit_fails_that_event_alone_with_validation_error(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    good = fresh_code()
    await barcodes.put(good, "cap")
    await engine.inbound(ref="po-1", sku="cap", location="store-1", qty=20)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)

    results = await apply_batch(
        engine,
        barcodes,
        location="store-1",
        events=[
            ev("e1", "sale", 1, barcode=good),
            ev("e2", "sale", 1, barcode=bad),
            ev("e3", "sale", 1, sku="cap"),
        ],
    )

    assert [r.status for r in results] == ["applied", "error", "applied"]
    failed = results[1].as_dict()
    assert failed["code"] == "validation_error"
    assert failed["event_id"] == "e2"
    assert failed["field"] == "events[1].barcode"
    assert "check digit" in failed["detail"]
    assert await on_hand(engine, "cap", "store-1") == 18


@pytest.mark.parametrize(
    ("event", "code", "field"),
    [
        (ev("x", "sale", 0, sku="cap"), "validation_error", "events[1].qty"),
        (ev("x", "sale", "2", sku="cap"), "validation_error", "events[1].qty"),
        (ev("x", "sale", 1.5, sku="cap"), "validation_error", "events[1].qty"),
        (ev("x", "count", -1, sku="cap"), "validation_error", "events[1].qty"),
        (ev("x", "refund", 1, sku="cap"), "validation_error", "events[1].type"),
        (ev("x y", "sale", 1, sku="cap"), "validation_error", "events[1].event_id"),
        (ev("x", "sale", 1), "validation_error", "events[1].sku"),
        (ev("x", "sale", 1, sku="cap", barcode="4006381333931"), "validation_error", None),
        (ev("x", "sale", 1, barcode="1234"), "validation_error", "events[1].barcode"),
        (ev("x", "sale", 1, barcode="4006381333931"), "not_found", "events[1]"),
        ("not an object", "validation_error", "events[1]"),
    ],
)
async def test_each_bad_event_fails_alone(
    engine: StockEngine, barcodes: BarcodeStore, event: Any, code: str, field: str | None
) -> None:
    await engine.inbound(ref="po-1", sku="cap", location="store-1", qty=20)

    results = await apply_batch(
        engine,
        barcodes,
        location="store-1",
        events=[ev("ok-1", "sale", 1, sku="cap"), event, ev("ok-2", "sale", 1, sku="cap")],
    )

    assert [r.status for r in results] == ["applied", "error", "applied"]
    assert results[1].as_dict()["code"] == code
    if field is not None:
        assert results[1].as_dict()["field"] == field
    assert await on_hand(engine, "cap", "store-1") == 18


async def test_the_same_event_id_with_another_body_is_refused_for_that_event(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    await apply_batch(engine, barcodes, location="s", events=[ev("e1", "sale", 1, sku="cap")])

    [result] = await apply_batch(
        engine, barcodes, location="s", events=[ev("e1", "sale", 2, sku="cap")]
    )

    assert (result.status, result.as_dict()["code"]) == ("error", "idempotency_mismatch")
    assert await on_hand(engine, "cap", "s") == -1


async def test_events_apply_in_the_order_given_for_each_sku(
    engine: StockEngine, barcodes: BarcodeStore
) -> None:
    skus = [f"sku-{i}" for i in range(5)]
    batch = []
    for n in range(60):  # counts make the order visible: a count then a sale is not a sale
        sku = skus[n % 5]
        batch.append(
            ev(f"e{n}", "count", n, sku=sku) if n % 3 == 0 else ev(f"e{n}", "sale", 1, sku=sku)
        )

    results = await apply_batch(engine, barcodes, location="store-1", events=batch)

    expected: dict[str, int] = {}
    for n, e in enumerate(batch):
        sku = e["sku"]
        expected[sku] = n if e["type"] == "count" else expected.get(sku, 0) - 1
        level = results[n].level
        assert level is not None and level.on_hand == expected[sku]
    for sku in skus:
        assert await on_hand(engine, sku, "store-1") == expected[sku]


def test_waves_hold_the_kth_event_of_every_sku_in_batch_order() -> None:
    from inventory_cache.pos import PosEvent

    evs = [PosEvent(i, f"e{i}", "sale", 1, s, None) for i, s in enumerate("AABCAB")]

    got = [[(e.index, s) for e, s in wave] for wave in waves([(e, e.sku or "") for e in evs])]

    assert got == [[(0, "A"), (2, "B"), (3, "C")], [(1, "A"), (5, "B")], [(4, "A")]]


@pytest.mark.parametrize(
    ("location", "events"),
    [
        ("bad location", [ev("e1", "sale", 1, sku="cap")]),
        ("store-1", []),
        ("store-1", {"event_id": "e1"}),
        ("store-1", [ev(f"e{i}", "sale", 1, sku="cap") for i in range(1001)]),
    ],
)
async def test_a_bad_batch_is_refused_whole_and_changes_nothing(
    engine: StockEngine, barcodes: BarcodeStore, location: Any, events: Any
) -> None:
    with pytest.raises(ValidationError):
        await apply_batch(engine, barcodes, location=location, events=events)
    assert await stream_rows(engine) == []


async def test_an_unready_redis_refuses_the_batch(
    backend: Any, prefix: str, barcodes: BarcodeStore
) -> None:
    cold = StockEngine(backend, make_settings(prefix + "cold"))  # never marked ready

    with pytest.raises(NotReady):
        await apply_batch(cold, barcodes, location="s", events=[ev("e1", "sale", 1, sku="a")])


# Real servers only: fakeredis runs Lua some ten times slower and proves nothing more here.
@pytest.mark.parametrize(
    "backend", ["redis", pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)
async def test_ten_terminals_sending_1000_events_at_once_end_at_the_arithmetic_and_the_ledger(
    engine: StockEngine,
    barcodes: BarcodeStore,
    db: Engine,
    prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    skus = [f"{prefix}-hot-{i}" for i in range(8)]  # the ledger database is the module's
    codes = {sku: fresh_code() for sku in skus[:4]}  # half the items are scanned
    for sku, code in codes.items():
        await barcodes.put(code, sku)
    for sku in skus:
        await engine.inbound(ref="po-0", sku=sku, location="store-1", qty=5000)
    rng = random.Random(6)
    batches: list[list[dict[str, Any]]] = []
    expected: Counter[str] = Counter({sku: 5000 for sku in skus})
    for t in range(10):
        batch = []
        for n in range(1000):
            sku, qty = rng.choice(skus), rng.randint(1, 3)
            kind = "sale" if rng.random() < 0.8 else "return"
            item = {"barcode": codes[sku]} if sku in codes and n % 2 else {"sku": sku}
            batch.append(ev(f"till{t}-{n}", kind, qty, **item))
            expected[sku] += -qty if kind == "sale" else qty
        batches.append(batch)

    all_results = await asyncio.wait_for(
        asyncio.gather(
            *(apply_batch(engine, barcodes, location="store-1", events=b) for b in batches)
        ),
        60,
    )

    assert all(r.status == "applied" for results in all_results for r in results)
    for sku in skus:
        assert await on_hand(engine, sku, "store-1") == expected[sku]
    # The streams (the ledger's source) agree: one row per event, deltas that add up.
    rows = [row for t, row in await stream_rows(engine) if t.startswith("pos_")]
    assert len(rows) == 10_000
    for sku in skus:
        assert 5000 + sum(r[2] for r in rows if r[0] == sku) == expected[sku]
    # And so does the ledger in PostgreSQL, once the worker has written it.
    settings = engine.settings
    if request.node.callspec.params["backend"] == "cluster":
        url = request.getfixturevalue("local_cluster").url
        settings = settings.model_copy(update={"redis_url": url, "redis_cluster": True})
    await asyncio.to_thread(drain_into_ledger, settings, db.url.render_as_string(False))
    with db.connect() as conn:
        ledger = dict(
            conn.execute(
                select(Movement.sku, func.sum(Movement.delta_on_hand))
                .where(Movement.sku.in_(skus))
                .group_by(Movement.sku)
            ).all()
        )
        events = conn.execute(
            select(func.count()).where(Movement.sku.in_(skus), Movement.type.like("pos_%"))
        ).scalar()
        levels = dict(
            conn.execute(
                select(StockLevel.sku, StockLevel.on_hand).where(
                    StockLevel.sku.in_(skus), StockLevel.location == "store-1"
                )
            ).all()
        )
    assert events == 10_000
    assert ledger == dict(expected)
    assert levels == dict(expected)
