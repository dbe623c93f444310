"""Sales and stock reports from the ledger, the stock levels and the stored forecasts.

Every report is a list of flat rows (so that the same rows are JSON or CSV), sorted by
(sku, location[, period]). Windows are whole UTC days ending with yesterday: "the last
28 days" on 2027-03-01 at noon is 2027-02-01 through 2027-02-28, so a report does not
change as today's sales trickle in. Sales and stockouts follow `demand.py`: sold is
`pos_sale` + `ship`, returned is `pos_return` + restocked `return`; a day out of stock
is one whose sellable level (on_hand - locked) touched zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.orm import Session

from inventory_cache.demand import (
    RETURN_TYPES,
    SALE_TYPES,
    day_expr,
    load_panel,
    midnight,
    series_keys,
)
from persistence.models import Forecast, Movement, StockLevel

Row = dict[str, Any]
Grain = Literal["day", "week"]


def window(now: datetime, days: int) -> tuple[date, date]:
    """[start, end) of the `days` whole UTC days before `now`'s day."""
    end = now.astimezone(UTC).date()
    return end - timedelta(days=days), end


def _scoped(q: Any, sku_col: Any, loc_col: Any, sku: str | None, location: str | None) -> Any:
    if sku is not None:
        q = q.where(sku_col == sku)
    if location is not None:
        q = q.where(loc_col == location)
    return q


def _week_expr(session: Session) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Movement.created_at, "weekday 0", "-6 days")
    return cast(func.date_trunc("week", func.timezone("UTC", Movement.created_at)), Date)


def sales(
    session: Session,
    *,
    start: date,
    end: date,
    grain: Grain = "day",
    sku: str | None = None,
    location: str | None = None,
) -> list[Row]:
    """Units sold, returned and net per (sku, location, day or ISO week starting Monday)."""
    period = (day_expr(session) if grain == "day" else _week_expr(session)).label("period")
    sold = func.sum(case((Movement.type.in_(SALE_TYPES), -Movement.delta_on_hand), else_=0))
    returned = func.sum(case((Movement.type.in_(RETURN_TYPES), Movement.delta_on_hand), else_=0))
    q = (
        select(Movement.sku, Movement.location, period, sold, returned)
        .where(
            Movement.type.in_(SALE_TYPES + RETURN_TYPES),
            Movement.created_at >= midnight(start),
            Movement.created_at < midnight(end),
        )
        .group_by(Movement.sku, Movement.location, period)
    )
    rows = [
        {
            "sku": s,
            "location": loc,
            "period": str(p),
            "sold": int(so),
            "returned": int(ret),
            "net": int(so) - int(ret),
        }
        for s, loc, p, so, ret in session.execute(
            _scoped(q, Movement.sku, Movement.location, sku, location)
        )
        if so or ret
    ]
    return sorted(rows, key=lambda r: (r["sku"], r["location"], r["period"]))


def _levels(session: Session, sku: str | None, location: str | None) -> dict[tuple[str, str], Any]:
    q = _scoped(select(StockLevel), StockLevel.sku, StockLevel.location, sku, location)
    return {(r.sku, r.location): r for r in session.scalars(q)}


def _sold(
    session: Session, start: date, end: date, sku: str | None, location: str | None
) -> dict[tuple[str, str], int]:
    q = (
        select(Movement.sku, Movement.location, -func.sum(Movement.delta_on_hand))
        .where(
            Movement.type.in_(SALE_TYPES),
            Movement.created_at >= midnight(start),
            Movement.created_at < midnight(end),
        )
        .group_by(Movement.sku, Movement.location)
    )
    rows = session.execute(_scoped(q, Movement.sku, Movement.location, sku, location))
    return {(s, loc): int(n or 0) for s, loc, n in rows}


def days_of_cover(
    session: Session,
    *,
    now: datetime,
    window_days: int,
    sku: str | None = None,
    location: str | None = None,
) -> list[Row]:
    """How many days the sellable stock (on_hand - locked) lasts at the expected daily
    demand: the stored forecast's mean over its horizon, else the window's sales velocity.
    `days_of_cover` is null where no demand is expected."""
    start, end = window(now, window_days)
    levels = _levels(session, sku, location)
    sold = _sold(session, start, end, sku, location)
    q = _scoped(select(Forecast), Forecast.sku, Forecast.location, sku, location)
    forecasts = {(f.sku, f.location): f for f in session.scalars(q)}
    out = []
    for key in sorted(set(levels) | set(sold)):
        lv = levels.get(key)
        on_hand, locked = (lv.on_hand, lv.locked) if lv else (0, 0)
        fc = forecasts.get(key)
        daily = fc.mean_daily if fc else sold.get(key, 0) / window_days
        sellable = on_hand - locked
        cover = round(max(sellable, 0) / daily, 1) if daily > 0 else None
        out.append(
            {
                "sku": key[0],
                "location": key[1],
                "on_hand": on_hand,
                "locked": locked,
                "sellable": sellable,
                "daily_demand": round(daily, 3),
                "demand_source": "forecast" if fc else "velocity",
                "days_of_cover": cover,
            }
        )
    return out


def _panel_rows(
    session: Session,
    *,
    start: date,
    end: date,
    sku: str | None,
    location: str | None,
) -> tuple[list[tuple[str, str]], Any]:
    keys = series_keys(session, start=start, end=end, sku=sku, location=location, with_sales=False)
    return keys, load_panel(session, keys=keys, start=start, end=end)


def turnover(
    session: Session,
    *,
    now: datetime,
    days: int,
    sku: str | None = None,
    location: str | None = None,
) -> list[Row]:
    """Units sold over the window divided by the average on_hand at the days' close:
    how many times the stock turned; `days_of_inventory` = days / turnover. A series
    without movements in the window held its current on_hand throughout."""
    start, end = window(now, days)
    keys, panel = _panel_rows(session, start=start, end=end, sku=sku, location=location)
    levels = _levels(session, sku, location)
    avg_stock = {k: float(panel.close[i].mean()) for i, k in enumerate(keys)}
    sold = {k: int(panel.sold[i].sum()) for i, k in enumerate(keys)}
    for key, lv in levels.items():
        avg_stock.setdefault(key, float(lv.on_hand))
    out = []
    for key in sorted(avg_stock):
        n, avg = sold.get(key, 0), avg_stock[key]
        turns = n / avg if avg > 0 else None
        out.append(
            {
                "sku": key[0],
                "location": key[1],
                "days": days,
                "sold": n,
                "average_on_hand": round(avg, 2),
                "turnover": round(turns, 3) if turns is not None else None,
                "days_of_inventory": round(days / turns, 1) if turns else None,
            }
        )
    return out


def dead_stock(
    session: Session,
    *,
    now: datetime,
    days: int,
    sku: str | None = None,
    location: str | None = None,
) -> list[Row]:
    """Stock on hand that has not sold for `days` days or more (or never sold)."""
    q = (
        select(Movement.sku, Movement.location, func.max(Movement.created_at))
        .where(Movement.type.in_(SALE_TYPES))
        .group_by(Movement.sku, Movement.location)
    )
    last = {
        (s, loc): at
        for s, loc, at in session.execute(
            _scoped(q, Movement.sku, Movement.location, sku, location)
        )
    }
    cutoff = now - timedelta(days=days)
    out = []
    for key, lv in sorted(_levels(session, sku, location).items()):
        at = last.get(key)
        if lv.on_hand <= 0:
            continue
        if at is not None:
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            if at > cutoff:
                continue
        out.append(
            {
                "sku": key[0],
                "location": key[1],
                "on_hand": lv.on_hand,
                "last_sale_at": at,
                "days_since_sale": (now - at).days if at is not None else None,
            }
        )
    return out


def stockouts(
    session: Session,
    *,
    now: datetime,
    days: int,
    sku: str | None = None,
    location: str | None = None,
) -> list[Row]:
    """Days out of stock in the window and the sales they cost: the mean net demand of
    the days in stock, times the days out of stock, less what those days still sold
    (never below zero)."""
    start, end = window(now, days)
    keys, panel = _panel_rows(session, start=start, end=end, sku=sku, location=location)
    demand, out_days = panel.demand, panel.stockout
    out = []
    for i, key in enumerate(keys):
        n_out = int(out_days[i].sum())
        if n_out == 0:
            continue
        in_stock = ~out_days[i]
        rate = float(demand[i][in_stock].mean()) if in_stock.any() else 0.0
        sold_out_days = float(demand[i][out_days[i]].sum())
        out.append(
            {
                "sku": key[0],
                "location": key[1],
                "days": days,
                "stockout_days": n_out,
                "daily_demand_in_stock": round(rate, 3),
                "sold_on_stockout_days": int(sold_out_days),
                "estimated_lost_units": round(max(0.0, rate * n_out - sold_out_days), 1),
            }
        )
    return out


def forecast_accuracy(session: Session, *, sku: str | None = None) -> list[Row]:
    """Per SKU, the stored forecasts' backtest errors: mean absolute error (units/day,
    summed over locations), root mean squared error (idem, in quadrature), MASE (mean over
    locations; below 1 beats the weekly naive forecast) and the models chosen."""
    q = select(Forecast).order_by(Forecast.sku, Forecast.location)
    if sku is not None:
        q = q.where(Forecast.sku == sku)
    by_sku: dict[str, list[Forecast]] = defaultdict(list)
    for f in session.scalars(q):
        by_sku[f.sku].append(f)
    return [_accuracy(s, fs) for s, fs in by_sku.items()]


def _accuracy(sku: str, fs: Sequence[Forecast]) -> Row:
    def vals(name: str) -> list[float]:
        return [v for v in (getattr(f, name) for f in fs) if v is not None]

    mae, rmse, mase = vals("mae"), vals("rmse"), vals("mase")
    return {
        "sku": sku,
        "locations": len(fs),
        "models": "+".join(sorted({f.model for f in fs})),
        "demand_classes": "+".join(sorted({f.demand_class for f in fs})),
        "forecast_daily": round(sum(f.mean_daily for f in fs), 3),
        "mae": round(sum(mae), 3) if mae else None,
        "rmse": round(float(np.sqrt(sum(r * r for r in rmse))), 3) if rmse else None,
        "mase": round(float(np.mean(mase)), 3) if mase else None,
        "start_date": min(f.start_date for f in fs).isoformat(),
        "run_id": fs[0].run_id,
    }
