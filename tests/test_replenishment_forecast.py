"""Forecast-driven replenishment equals a table worked out by hand; the velocity method
stays what it was where no forecast exists or when asked for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from inventory_cache.replenishment import replenishment, suggest_from_forecast
from persistence.db import make_engine, session_factory
from persistence.models import Forecast, Policy, StockLevel, Transfer
from tests.support.api import Api

NOW = datetime(2027, 3, 3, 9, tzinfo=UTC)
WEEK = [2.0, 2.0, 2.0, 2.0, 2.0, 4.0, 4.0]  # 18 a week
DAILY = WEEK * 8


def forecast(sku: str, rmse: float = 1.5) -> Forecast:
    return Forecast(
        sku=sku,
        location="north",
        run_id="r",
        start_date=(NOW - timedelta(days=2)).date(),  # two days old: today is its day 2
        model="ses_weekly",
        demand_class="smooth",
        daily=DAILY,
        mean_daily=18 / 7,
        mae=1.0,
        rmse=rmse,
        mase=0.7,
        history_days=364,
        stockout_days=0,
    )


def seed(s: Session) -> None:
    for sku, level, up_to in (("F", 0.95, 0), ("G", 0.99, 50), ("H", 0.95, 0)):
        s.add(
            Policy(
                sku=sku,
                location="north",
                safety_stock=1,
                lead_time_days=5,
                service_level=level,
                order_up_to=up_to,
            )
        )
        s.add(forecast(sku))
    s.add_all(
        [
            StockLevel(sku="F", location="north", on_hand=20, locked=3),
            StockLevel(sku="G", location="north", on_hand=20, locked=3),
            StockLevel(sku="H", location="north", on_hand=40, locked=0),
        ]
    )
    for sku in ("F", "G"):
        s.add(
            Transfer(
                transfer_id=f"t-{sku}",
                sku=sku,
                from_location="south",
                to_location="north",
                qty=2,
                status="in_transit",
                fingerprint="f",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    s.commit()


@pytest.fixture
def session(pg_url: str) -> Iterator[Session]:
    db = make_engine(pg_url)
    with session_factory(db)() as s:
        yield s
    db.dispose()


# By hand, lead time 5 from day 2 of the forecast: 2+2+2+4+4 = 14 units.
#   F: z(0.95) = 1.645; 1.645 x 1.5 x sqrt(5) = 5.52 -> 6; rop = 14 + 6 + 1 = 21;
#      position 20 - 3 + 2 = 19 <= 21; up to 21 + two weeks (36) = 57; order 57 - 19 = 38.
#   G: z(0.99) = 2.326 -> 7.80 -> 8; rop 23; the policy's order-up-to 50: order 50 - 19 = 31.
#   H: rop 21, position 40: nothing to order.
def test_forecast_driven_suggestions_equal_the_hand_computed_table(session: Session) -> None:
    seed(session)

    rows = replenishment(session, now=NOW, window_days=28, cover_days=14, include_all=True)

    table = [
        (
            r.sku,
            r.reorder_point,
            r.position,
            r.suggested_qty,
            r.forecast.demand_over_lead_time if r.forecast else None,
            r.forecast.safety_stock_from_error if r.forecast else None,
            r.forecast.order_up_to if r.forecast else None,
            r.forecast.incoming if r.forecast else None,
        )
        for r in rows
    ]
    assert table == [
        ("F", 21, 19, 38, 14.0, 6, 57, 2),
        ("G", 23, 19, 31, 14.0, 8, 50, 2),
        ("H", 21, 40, 0, 14.0, 6, 57, 0),
    ]
    assert rows[0].forecast is not None
    assert rows[0].forecast.why == (
        "ses_weekly forecasts 14 over the lead time; + 6 safety stock from its error at 95% "
        "service; position 19 (on hand 20 - locked 3 + incoming 2) is at or below the reorder "
        "point: order 38 up to 57"
    )
    velocity = replenishment(
        session, now=NOW, window_days=28, cover_days=14, include_all=True, use_forecasts=False
    )
    assert [(r.sku, r.reorder_point, r.forecast) for r in velocity] == [
        ("F", 1, None),
        ("G", 1, None),
        ("H", 1, None),
    ]


def test_a_lead_time_past_the_horizon_takes_the_forecast_mean_for_the_days_beyond() -> None:
    over_lead, *_ = suggest_from_forecast(
        daily=DAILY, offset=2, rmse=0.0, service_level=0.95, cover_days=0, lead_time_days=60
    )

    # days 2..55 of the forecast (144 - 4 = 140) and 6 days at 18/7
    assert over_lead == pytest.approx(140 + 6 * 18 / 7)


async def test_the_api_shows_the_forecast_basis_and_can_be_asked_for_velocity(api: Api) -> None:
    with session_factory(api.db)() as s:
        s.add(Policy(sku="api-F", location="north", lead_time_days=5, safety_stock=1))
        s.add(StockLevel(sku="api-F", location="north", on_hand=0, locked=0))
        f = forecast("api-F")
        f.start_date = datetime.now(UTC).date()
        s.add(f)
        s.commit()
    read = api.auth("read")

    auto = await api.client.get("/v1/replenishment?sku=api-F", headers=read)
    velocity = await api.client.get("/v1/replenishment?sku=api-F&method=velocity", headers=read)

    assert auto.status_code == 200, auto.text
    [row] = auto.json()["items"]
    assert row["forecast"]["model"] == "ses_weekly" and row["suggested_qty"] > 0
    assert set(row["forecast"]) >= {"demand_over_lead_time", "safety_stock_from_error", "why"}
    assert "forecast" not in velocity.json()["items"][0]
