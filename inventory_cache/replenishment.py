"""Replenishment: what to reorder, from sales velocity in the ledger, lead time and policy.

Per (sku, location), over a window of W days ending now (`INVENTORY_REPLENISHMENT_*`):

* sold = units that left through sales in the ledger: `ship` (online orders) and
  `pos_sale` (tills). Transfers move stock, they do not consume it; returns are not
  netted out (a returned unit was still demand).
* avg_daily_sales = sold / W.
* reorder_point = max(policy reorder_point, ceil(avg_daily_sales x lead_time_days)
  + safety_stock): stock expected to sell while an order is on its way, plus the buffer;
  the policy's own reorder point (the low-stock alert's threshold) is a floor.
* position = on_hand - locked + in_transit (transfers shipped towards this location).
* suggested_qty = 0 while position > reorder_point; else the larger of the policy's
  reorder_qty and what brings the position back to the reorder point plus
  `cover_days` of sales: reorder_point + ceil(avg_daily_sales x cover_days) - position.

Integer ceilings are computed exactly (no floating point), so a hand-computed table
matches to the unit. Levels come from `stock_levels` (the worker's copy, seconds behind
Redis): fine for a purchasing report.

Where the forecast job has stored a forecast for the (sku, location) (`forecasts`), the
suggestion is forecast-driven instead, and says why in its `forecast` object:

* demand_over_lead_time = the forecast's daily demand summed over the lead time, from
  today (the forecast's weekly pattern and trend included, not a flat average);
* safety stock from the forecast error = ceil(z x rmse x sqrt(lead_time_days)), z the
  normal quantile of the policy's `service_level` (default 0.95: z = 1.645), rmse the
  forecast's daily error over its backtest (daily errors taken as independent);
* reorder_point = max(policy reorder_point, ceil(demand_over_lead_time) + that safety
  stock + the policy's safety_stock, which online sale never sees);
* order_up_to = the policy's `order_up_to`, else reorder_point + the forecast over the
  `cover_days` after the lead time; suggested_qty = 0 while position > reorder_point,
  else max(reorder_qty, order_up_to - position).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from persistence.models import Forecast, Movement, Policy, StockLevel, Transfer

SALE_TYPES = ("ship", "pos_sale")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class ForecastBasis:
    """Why a forecast-driven suggestion is what it is (units; `why` in words)."""

    model: str
    demand_class: str
    forecast_start: str
    service_level: float
    demand_over_lead_time: float
    safety_stock_from_error: int
    order_up_to: int
    incoming: int
    why: str


# Also the response schema of `GET /v1/replenishment` (FastAPI reads the dataclass), so
# its fields are defined here only; the docstring is the schema's description.
@dataclass(frozen=True, slots=True)
class Suggestion:
    """The suggested order for one (sku, location)."""

    sku: str
    location: str
    sold: int
    window_days: int
    avg_daily_sales: float
    lead_time_days: int
    safety_stock: int
    reorder_point: int
    on_hand: int
    locked: int
    in_transit: int
    position: int
    suggested_qty: int
    forecast: ForecastBasis | None = None  # absent: the velocity method above

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.forecast is None:
            del out["forecast"]
        return out


def suggest(
    *,
    sold: int,
    window_days: int,
    cover_days: int,
    lead_time_days: int = 0,
    safety_stock: int = 0,
    policy_reorder_point: int = 0,
    reorder_qty: int = 0,
    on_hand: int = 0,
    locked: int = 0,
    in_transit: int = 0,
) -> tuple[int, int, int]:
    """(reorder_point, position, suggested_qty) for one (sku, location)."""
    reorder_point = max(
        policy_reorder_point, _ceil_div(sold * lead_time_days, window_days) + safety_stock
    )
    position = on_hand - locked + in_transit
    if position > reorder_point:
        return reorder_point, position, 0
    cover = _ceil_div(sold * cover_days, window_days)
    return reorder_point, position, max(reorder_qty, reorder_point + cover - position)


def suggest_from_forecast(
    *,
    daily: list[float],
    offset: int,
    rmse: float,
    service_level: float,
    cover_days: int,
    lead_time_days: int = 0,
    safety_stock: int = 0,
    policy_reorder_point: int = 0,
    policy_order_up_to: int = 0,
    reorder_qty: int = 0,
    on_hand: int = 0,
    locked: int = 0,
    in_transit: int = 0,
) -> tuple[float, int, int, int, int, int]:
    """(demand_over_lead_time, safety_from_error, reorder_point, order_up_to, position,
    suggested_qty) from a daily forecast whose day `offset` is today.

    Days past the forecast's horizon are taken at its mean daily demand."""
    mean = sum(daily) / len(daily) if daily else 0.0

    def demand(first: int, days: int) -> float:
        part = daily[offset + first : offset + first + days]
        return sum(part) + (days - len(part)) * mean

    over_lead = demand(0, lead_time_days)
    z = NormalDist().inv_cdf(service_level)
    from_error = math.ceil(round(z * rmse * math.sqrt(lead_time_days), 6))
    reorder_point = max(
        policy_reorder_point, math.ceil(round(over_lead, 6)) + from_error + safety_stock
    )
    order_up_to = policy_order_up_to or reorder_point + math.ceil(
        round(demand(lead_time_days, cover_days), 6)
    )
    position = on_hand - locked + in_transit
    qty = 0 if position > reorder_point else max(reorder_qty, order_up_to - position)
    return over_lead, from_error, reorder_point, order_up_to, position, qty


def _why(b: dict[str, Any], on_hand: int, locked: int, position: int, qty: int) -> str:
    state = f"position {position} (on hand {on_hand} - locked {locked} + incoming {b['incoming']})"
    head = (
        f"{b['model']} forecasts {b['demand_over_lead_time']:g} over the lead time; "
        f"+ {b['safety_stock_from_error']} safety stock from its error at "
        f"{b['service_level']:.0%} service"
    )
    if qty == 0:
        return f"{head}; {state} is above the reorder point: nothing to order"
    return f"{head}; {state} is at or below the reorder point: order {qty} up to {b['order_up_to']}"


def replenishment(
    session: Session,
    *,
    now: datetime,
    window_days: int,
    cover_days: int,
    sku: str | None = None,
    location: str | None = None,
    include_all: bool = False,
    use_forecasts: bool = True,
) -> list[Suggestion]:
    """Suggestions for every (sku, location) with a policy or sales in the window;
    forecast-driven where a stored forecast exists (unless `use_forecasts` is False).

    Returns:
        Sorted by (sku, location); only those with suggested_qty > 0 unless include_all.
    """

    def scoped(q: Any, sku_col: Any, loc_col: Any) -> Any:
        if sku is not None:
            q = q.where(sku_col == sku)
        if location is not None:
            q = q.where(loc_col == location)
        return q

    since = now - timedelta(days=window_days)
    sold_q = (
        select(Movement.sku, Movement.location, -func.sum(Movement.delta_on_hand))
        .where(
            Movement.type.in_(SALE_TYPES),
            Movement.created_at >= since,
            Movement.created_at < now,
        )
        .group_by(Movement.sku, Movement.location)
    )
    sold = {
        (s, loc): int(n or 0)
        for s, loc, n in session.execute(scoped(sold_q, Movement.sku, Movement.location))
    }
    policies = {
        (p.sku, p.location): p
        for p in session.scalars(scoped(select(Policy), Policy.sku, Policy.location))
    }
    forecasts: dict[tuple[str, str], Forecast] = {}
    if use_forecasts:
        q = scoped(select(Forecast), Forecast.sku, Forecast.location)
        forecasts = {(f.sku, f.location): f for f in session.scalars(q)}
    keys = sorted(set(sold) | set(policies) | set(forecasts))
    skus = sorted({k[0] for k in keys})
    levels: dict[tuple[str, str], StockLevel] = {}
    transit: dict[tuple[str, str], int] = {}
    for i in range(0, len(skus), 500):
        chunk = skus[i : i + 500]
        for row in session.scalars(select(StockLevel).where(StockLevel.sku.in_(chunk))):
            levels[(row.sku, row.location)] = row
        in_transit_q = (
            select(Transfer.sku, Transfer.to_location, func.sum(Transfer.qty))
            .where(Transfer.sku.in_(chunk), Transfer.status == "in_transit")
            .group_by(Transfer.sku, Transfer.to_location)
        )
        for s, loc, n in session.execute(in_transit_q):
            transit[(s, loc)] = int(n or 0)
    out = []
    for key in keys:
        p, lv, n = policies.get(key), levels.get(key), sold.get(key, 0)
        lead = p.lead_time_days if p else 0
        safety = p.safety_stock if p else 0
        on_hand, locked = (lv.on_hand, lv.locked) if lv else (0, 0)
        fc = forecasts.get(key)
        basis = None
        if fc is None:
            rop, position, qty = suggest(
                sold=n,
                window_days=window_days,
                cover_days=cover_days,
                lead_time_days=lead,
                safety_stock=safety,
                policy_reorder_point=p.reorder_point if p else 0,
                reorder_qty=p.reorder_qty if p else 0,
                on_hand=on_hand,
                locked=locked,
                in_transit=transit.get(key, 0),
            )
        else:
            level = p.service_level if p else 0.95
            over_lead, from_error, rop, up_to, position, qty = suggest_from_forecast(
                daily=list(fc.daily),
                offset=max(0, (now.date() - fc.start_date).days),
                rmse=fc.rmse or 0.0,
                service_level=level,
                cover_days=cover_days,
                lead_time_days=lead,
                safety_stock=safety,
                policy_reorder_point=p.reorder_point if p else 0,
                policy_order_up_to=p.order_up_to if p else 0,
                reorder_qty=p.reorder_qty if p else 0,
                on_hand=on_hand,
                locked=locked,
                in_transit=transit.get(key, 0),
            )
            b: dict[str, Any] = {
                "model": fc.model,
                "demand_class": fc.demand_class,
                "forecast_start": fc.start_date.isoformat(),
                "service_level": level,
                "demand_over_lead_time": round(over_lead, 2),
                "safety_stock_from_error": from_error,
                "order_up_to": up_to,
                "incoming": transit.get(key, 0),
            }
            basis = ForecastBasis(**b, why=_why(b, on_hand, locked, position, qty))
        if qty == 0 and not include_all:
            continue
        out.append(
            Suggestion(
                sku=key[0],
                location=key[1],
                sold=n,
                window_days=window_days,
                avg_daily_sales=round(n / window_days, 3),
                lead_time_days=lead,
                safety_stock=safety,
                reorder_point=rop,
                on_hand=lv.on_hand if lv else 0,
                locked=lv.locked if lv else 0,
                in_transit=transit.get(key, 0),
                position=position,
                suggested_qty=qty,
                forecast=basis,
            )
        )
    return out
