"""Reports on a small fixed ledger equal the figures worked out by hand (real PostgreSQL),
and the same rows come out of /v1/reports/... as JSON and as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from itertools import count

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from inventory_cache import reports
from inventory_cache.demand import load_panel
from persistence.db import make_engine, session_factory
from persistence.models import Forecast, Movement, StockLevel
from tests.support.api import Api
from tests.support.postgres import fresh_database

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)  # a Monday; the 7-day window is Feb 22-28
_ids = count(1)


def at(day: int, hour: int) -> datetime:
    return (
        datetime(2027, 2, day, hour, tzinfo=UTC) if day > 0 else datetime(2027, 1, 15, tzinfo=UTC)
    )


class Ledger:
    """Writes movements as the worker would, each with the levels after it."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.levels: dict[tuple[str, str], tuple[int, int]] = {}

    def move(self, sku: str, loc: str, type: str, d_on_hand: int, when: datetime) -> None:
        on_hand, locked = self.levels.get((sku, loc), (0, 0))
        d_locked = d_on_hand if type == "ship" else 0
        on_hand, locked = on_hand + d_on_hand, locked + d_locked
        self.levels[(sku, loc)] = (on_hand, locked)
        n = next(_ids)
        self.s.add(
            Movement(
                op_id=f"{type}:{n}",
                sku=sku,
                location=loc,
                type=type,
                reason=type,
                ref=f"r{n}",
                delta_on_hand=d_on_hand,
                delta_locked=d_locked,
                on_hand_after=on_hand,
                locked_after=locked,
                safety_stock_after=0,
                version=n,
                created_at=when,
                stream_id=f"{n}-0",
            )
        )


def seed(s: Session) -> None:
    led = Ledger(s)
    # A at north: sells out on the 25th, restocked on the 27th.
    led.move("A", "north", "inbound", 10, at(20, 10))
    led.move("A", "north", "pos_sale", -2, at(22, 10))  # 8
    led.levels[("A", "north")] = (8, 3)  # an order reserves 3 (reserve rows are not sales)
    led.move("A", "north", "ship", -3, at(23, 10))  # 5, locked 0
    led.move("A", "north", "pos_return", 1, at(23, 15))  # 6
    led.move("A", "north", "pos_sale", -6, at(25, 9))  # 0: out from the 25th
    led.move("A", "north", "inbound", 20, at(27, 8))  # opened the 27th at 0
    led.move("A", "north", "pos_sale", -4, at(27, 12))  # 16
    # B at south: out from the 23rd to the end of the window.
    led.move("B", "south", "inbound", 5, at(10, 10))
    led.move("B", "south", "pos_sale", -3, at(22, 10))  # 2
    led.move("B", "south", "pos_sale", -2, at(23, 10))  # 0
    led.move("B", "south", "inbound", 10, at(28, 9))  # opened the 28th at 0
    led.move("B", "south", "pos_sale", -1, at(28, 18))  # 9
    led.move("B", "south", "pos_sale", -9, NOW)  # today: outside every window
    # C never sold; D last sold on Feb 1st.
    led.move("C", "north", "inbound", 7, at(0, 0))
    led.move("D", "north", "inbound", 4, at(0, 0))
    led.move("D", "north", "pos_sale", -1, at(1, 10))
    s.add_all(
        [
            StockLevel(sku="A", location="north", on_hand=16, locked=0),
            StockLevel(sku="B", location="south", on_hand=9, locked=2),
            StockLevel(sku="C", location="north", on_hand=7, locked=0),
            StockLevel(sku="D", location="north", on_hand=3, locked=0),
        ]
    )
    for loc, model, mae, rmse, mase, mean in (
        ("south", "tsb", 1.0, 1.5, 0.8, 2.0),
        ("north", "croston_sba", 0.5, 2.0, 0.6, 0.25),
    ):
        s.add(
            Forecast(
                sku="B",
                location=loc,
                run_id="r1",
                start_date=date(2027, 3, 1),
                model=model,
                demand_class="intermittent",
                daily=[mean] * 56,
                mean_daily=mean,
                mae=mae,
                rmse=rmse,
                mase=mase,
                history_days=364,
                stockout_days=0,
            )
        )
    s.commit()


@pytest.fixture(scope="module")
def db() -> Iterator[Engine]:
    with fresh_database() as url:
        engine = make_engine(url)
        with session_factory(engine)() as s:
            seed(s)
        yield engine
        engine.dispose()


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with session_factory(db)() as s:
        yield s


def test_the_daily_panel_nets_returns_and_marks_days_that_touched_zero(session: Session) -> None:
    panel = load_panel(
        session,
        keys=[("A", "north"), ("B", "south")],
        start=date(2027, 2, 22),
        end=date(2027, 3, 1),
    )

    assert panel.sold.tolist() == [[2, 3, 0, 6, 0, 4, 0], [3, 2, 0, 0, 0, 0, 1]]
    assert panel.returned[0].tolist() == [0, 1, 0, 0, 0, 0, 0]
    assert panel.demand[0].tolist() == [2, 2, 0, 6, 0, 4, 0]
    assert panel.stockout.astype(int).tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]]
    assert panel.close.tolist() == [[8, 6, 6, 0, 0, 16, 16], [2, 0, 0, 0, 0, 0, 9]]


def test_sales_by_day_and_by_week(session: Session) -> None:
    start, end = date(2027, 2, 22), date(2027, 3, 1)

    by_day = reports.sales(session, start=start, end=end, sku="A")
    by_week = reports.sales(session, start=start, end=end, grain="week")

    assert [(r["period"], r["sold"], r["returned"], r["net"]) for r in by_day] == [
        ("2027-02-22", 2, 0, 2),
        ("2027-02-23", 3, 1, 2),
        ("2027-02-25", 6, 0, 6),
        ("2027-02-27", 4, 0, 4),
    ]
    assert [(r["sku"], r["location"], r["period"], r["net"]) for r in by_week] == [
        ("A", "north", "2027-02-22", 14),
        ("B", "south", "2027-02-22", 6),
    ]


def test_days_of_cover_uses_the_forecast_else_the_window_velocity(session: Session) -> None:
    rows = reports.days_of_cover(session, now=NOW, window_days=7)

    # A: 15 sold in 7 days -> 2.143/day; 16 / 2.143 = 7.47. B: forecast 2/day, 9 - 2 = 7 -> 3.5.
    assert [
        (r["sku"], r["sellable"], r["daily_demand"], r["demand_source"], r["days_of_cover"])
        for r in rows
    ] == [
        ("A", 16, 2.143, "velocity", 7.5),
        ("B", 7, 2.0, "forecast", 3.5),
        ("C", 7, 0.0, "velocity", None),
        ("D", 3, 0.0, "velocity", None),
    ]


def test_turnover_is_units_sold_over_the_mean_closing_on_hand(session: Session) -> None:
    rows = reports.turnover(session, now=NOW, days=7)

    # A: closes 8,6,6,0,0,16,16 -> mean 52/7; 15 sold -> 2.019 turns, 52/15 = 3.5 days.
    # B: closes 2,0,0,0,0,0,9 -> 11/7; 6 sold -> 3.818 turns, 11/6 = 1.8 days.
    assert [
        (r["sku"], r["sold"], r["average_on_hand"], r["turnover"], r["days_of_inventory"])
        for r in rows
    ] == [
        ("A", 15, 7.43, 2.019, 3.5),
        ("B", 6, 1.57, 3.818, 1.8),
        ("C", 0, 7.0, 0.0, None),
        ("D", 0, 3.0, 0.0, None),
    ]


def test_dead_stock_is_stock_on_hand_unsold_for_n_days(session: Session) -> None:
    rows = reports.dead_stock(session, now=NOW, days=14)

    assert [(r["sku"], r["on_hand"], r["last_sale_at"], r["days_since_sale"]) for r in rows] == [
        ("C", 7, None, None),
        ("D", 3, datetime(2027, 2, 1, 10, tzinfo=UTC), 28),
    ]
    assert reports.dead_stock(session, now=NOW, days=29) == [rows[0]]


def test_stockout_days_and_the_sales_they_lost(session: Session) -> None:
    rows = reports.stockouts(session, now=NOW, days=7)

    # A: out 3 days, in-stock days sold 2,2,0,0 -> 1/day; 3 expected < 10 sold those days: 0.
    # B: out 6 days, the one in-stock day sold 3 -> 3/day x 6 = 18, less 2 + 1 sold: 15.
    assert [
        (r["sku"], r["stockout_days"], r["daily_demand_in_stock"], r["estimated_lost_units"])
        for r in rows
    ] == [("A", 3, 1.0, 0.0), ("B", 6, 3.0, 15.0)]


def test_forecast_accuracy_per_sku_sums_errors_over_locations(session: Session) -> None:
    rows = reports.forecast_accuracy(session)

    assert rows == [
        {
            "sku": "B",
            "locations": 2,
            "models": "croston_sba+tsb",
            "demand_classes": "intermittent",
            "forecast_daily": 2.25,
            "mae": 1.5,
            "rmse": 2.5,
            "mase": 0.7,
            "start_date": "2027-03-01",
            "run_id": "r1",
        }
    ]


async def test_reports_over_http_as_json_and_csv(api: Api) -> None:
    with session_factory(api.db)() as s:
        seed(s)
    read = api.auth("read")
    q = "/v1/reports/stockouts?days=7&until=2027-03-01"

    as_json = await api.client.get(q, headers=read)
    as_csv = await api.client.get(q + "&format=csv", headers=read)
    by_accept = await api.client.get(q, headers={**read, "Accept": "text/csv"})
    sales = await api.client.get(
        "/v1/reports/sales?group=week&days=7&until=2027-03-01&sku=A", headers=read
    )

    assert as_json.status_code == 200, as_json.text
    assert [r["estimated_lost_units"] for r in as_json.json()["items"]] == [0.0, 15.0]
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines() == [
        "sku,location,days,stockout_days,daily_demand_in_stock,"
        "sold_on_stockout_days,estimated_lost_units",
        "A,north,7,3,1.0,10,0.0",
        "B,south,7,6,3.0,3,15.0",
    ]
    assert by_accept.text == as_csv.text
    assert sales.json()["items"] == [
        {
            "sku": "A",
            "location": "north",
            "period": "2027-02-22",
            "sold": 15,
            "returned": 1,
            "net": 14,
        }
    ]
    dead = await api.client.get("/v1/reports/dead-stock?days=14&until=2027-03-01", headers=read)
    assert dead.json()["items"][1]["last_sale_at"] == "2027-02-01T10:00:00.000Z"
    for path in (
        "sales",
        "days-of-cover",
        "turnover",
        "dead-stock",
        "stockouts",
        "forecast-accuracy",
    ):
        assert (await api.client.get(f"/v1/reports/{path}")).status_code == 401
        assert (await api.client.get(f"/v1/reports/{path}", headers=read)).status_code == 200
    bad = await api.client.get("/v1/reports/sales?group=month", headers=read)
    assert bad.status_code == 422
