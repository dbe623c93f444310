"""Replenishment on a seeded ledger equals a table computed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy.orm import Session

from inventory_cache.replenishment import replenishment, suggest
from persistence.db import make_engine, session_factory
from persistence.models import Movement, Policy, StockLevel, Transfer

NOW = datetime(2027, 3, 1, tzinfo=UTC)
SINCE = NOW - timedelta(days=28)
_ids = count()


@pytest.fixture
def session(pg_url: str) -> Iterator[Session]:
    db = make_engine(pg_url)
    with session_factory(db)() as s:
        yield s
    db.dispose()


def move(s: Session, sku: str, loc: str, type: str, delta: int, at: datetime) -> None:
    n = next(_ids)
    s.add(
        Movement(
            op_id=f"{type}:{n}",
            sku=sku,
            location=loc,
            type=type,
            reason=type,
            ref=f"r{n}",
            delta_on_hand=delta,
            delta_locked=0,
            on_hand_after=0,
            locked_after=0,
            safety_stock_after=0,
            version=n,
            created_at=at,
            stream_id=f"{n}-0",
        )
    )


def seed(s: Session) -> None:
    day = timedelta(days=1)
    s.add_all(
        [
            Policy(
                sku="A",
                location="north",
                safety_stock=5,
                reorder_point=0,
                reorder_qty=20,
                lead_time_days=7,
            ),
            Policy(
                sku="B",
                location="north",
                safety_stock=0,
                reorder_point=0,
                reorder_qty=50,
                lead_time_days=10,
            ),
            Policy(
                sku="D",
                location="north",
                safety_stock=2,
                reorder_point=10,
                reorder_qty=5,
                lead_time_days=3,
            ),
            Policy(
                sku="E",
                location="north",
                safety_stock=0,
                reorder_point=0,
                reorder_qty=0,
                lead_time_days=14,
            ),
            StockLevel(sku="A", location="north", on_hand=20, locked=3, version=1),
            StockLevel(sku="B", location="north", on_hand=3, locked=0, version=1),
            StockLevel(sku="D", location="north", on_hand=500, locked=0, version=1),
            StockLevel(sku="E", location="north", on_hand=2, locked=0, version=1),
            Transfer(
                transfer_id="t1",
                sku="E",
                from_location="south",
                to_location="north",
                qty=3,
                status="in_transit",
                fingerprint="f",
                created_at=NOW - day,
                updated_at=NOW - day,
            ),
            Transfer(
                transfer_id="t2",
                sku="E",
                from_location="south",
                to_location="north",
                qty=40,
                status="received",  # already in on_hand
                fingerprint="f",
                created_at=NOW - day,
                updated_at=NOW - day,
            ),
        ]
    )
    for d in range(28):  # A: 2 a day by online orders
        move(s, "A", "north", "ship", -2, SINCE + d * day + timedelta(hours=12))
    move(s, "A", "north", "transfer_ship", -5, NOW - day)  # moved, not sold
    move(s, "A", "north", "return", 2, NOW - day)  # returns are not netted out
    for d in range(5):  # B: 10 at the till, and an old rush outside the window
        move(s, "B", "north", "pos_sale", -2, NOW - (d + 1) * day)
    move(s, "B", "north", "pos_sale", -100, NOW - 40 * day)
    for d in range(28):  # C: 1 a day, no policy, no level row
        move(s, "C", "south", "ship", -1, SINCE + d * day)
    move(s, "E", "north", "ship", -4, SINCE)  # the window's first instant counts...
    move(s, "E", "north", "ship", -10, NOW - day)
    move(s, "E", "north", "ship", -7, NOW)  # ...its end does not
    s.commit()


# Worked by hand: W = 28 days, cover = 14 days.
#   A: sold 56, avg 2; rop = ceil(2*7) + 5 = 19; position 20-3 = 17 <= 19;
#      qty = max(20, 19 + ceil(2*14) - 17) = max(20, 30) = 30
#   B: sold 10, avg 0.357; rop = ceil(100/28) = 4; position 3; qty = max(50, 4 + 5 - 3) = 50
#   C: sold 28, avg 1; no policy: rop 0; position 0; qty = 0 + 14 - 0 = 14
#   D: no sales; rop = max(10, 0 + 2) = 10; position 500: nothing to order
#   E: sold 14, avg 0.5; rop = ceil(0.5*14) = 7; position 2 + 3 in transit = 5;
#      qty = max(0, 7 + ceil(0.5*14) - 5) = 9
EXPECTED = [
    # sku, loc, sold, avg, lead, safety, rop, on_hand, locked, in_transit, position, qty
    ("A", "north", 56, 2.0, 7, 5, 19, 20, 3, 0, 17, 30),
    ("B", "north", 10, 0.357, 10, 0, 4, 3, 0, 0, 3, 50),
    ("C", "south", 28, 1.0, 0, 0, 0, 0, 0, 0, 0, 14),
    ("D", "north", 0, 0.0, 3, 2, 10, 500, 0, 0, 500, 0),
    ("E", "north", 14, 0.5, 14, 0, 7, 2, 0, 3, 5, 9),
]


def table(session: Session, **kw: object) -> list[tuple[object, ...]]:
    rows = replenishment(session, now=NOW, window_days=28, cover_days=14, **kw)  # type: ignore[arg-type]
    return [
        (
            r.sku,
            r.location,
            r.sold,
            r.avg_daily_sales,
            r.lead_time_days,
            r.safety_stock,
            r.reorder_point,
            r.on_hand,
            r.locked,
            r.in_transit,
            r.position,
            r.suggested_qty,
        )
        for r in rows
    ]


def test_replenishment_of_a_seeded_ledger_equals_the_hand_computed_table(
    session: Session,
) -> None:
    seed(session)

    assert table(session, include_all=True) == EXPECTED
    assert table(session) == [row for row in EXPECTED if row[-1] > 0]
    assert table(session, sku="E", location="north") == [EXPECTED[4]]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # Exactly at the reorder point: order; one above: do not.
        ({"sold": 28, "lead_time_days": 5, "on_hand": 5}, (5, 5, 14)),
        ({"sold": 28, "lead_time_days": 5, "on_hand": 6}, (5, 6, 0)),
        # Locked units are promised away; an oversold position asks for the shortfall too.
        ({"sold": 0, "on_hand": 2, "locked": 5, "reorder_qty": 1}, (0, -3, 3)),
        # The policy's reorder point is a floor under the computed one.
        ({"sold": 0, "policy_reorder_point": 8, "on_hand": 8, "reorder_qty": 12}, (8, 8, 12)),
    ],
)
def test_reorder_point_and_quantity_at_their_edges(
    kw: dict[str, int], expected: tuple[int, int, int]
) -> None:
    assert suggest(window_days=28, cover_days=14, **kw) == expected
