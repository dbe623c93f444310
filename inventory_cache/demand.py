"""Daily demand per (sku, location), read from the ledger.

One row per (sku, location, UTC day) is aggregated in the database, so Python sees
days, not movements:

* sold: units out through sales, `pos_sale` (tills) and `ship` (online orders);
* returned: units back through returns, `pos_return` and restocked `return`s (a return
  without restock records no quantity in the ledger, so it cannot be netted);
* net demand = max(0, sold - returned) that day;
* the day's opening level (before its first movement), its lowest and its closing
  `on_hand - locked` (what could still be sold).

A day is out of stock when the sellable level was at or below zero at any point of it,
opening included (a day that sold out at three in the afternoon saw only part of its
demand). Days without movements carry the previous day's close. Days before a series'
first movement in the window carry that movement's opening level. Out-of-stock days are
`observed = False`: forecasting imputes them and reports estimate the sales they lost,
rather than reading them as days nobody wanted the product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC as _UTC
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Date, and_, case, cast, func, or_, select, tuple_
from sqlalchemy.orm import Session

from persistence.models import Movement

SALE_TYPES = ("pos_sale", "ship")
RETURN_TYPES = ("pos_return", "return")


@dataclass
class Panel:
    """Series x days arrays over `start`..`start + days - 1` (UTC days)."""

    keys: list[tuple[str, str]]
    start: date
    sold: np.ndarray[Any, np.dtype[np.int64]]
    returned: np.ndarray[Any, np.dtype[np.int64]]
    close: np.ndarray[Any, np.dtype[np.int64]]  # on_hand at the day's close
    stockout: np.ndarray[Any, np.dtype[np.bool_]]

    @property
    def days(self) -> int:
        return int(self.sold.shape[1])

    @property
    def demand(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.maximum(self.sold - self.returned, 0).astype(np.float64)

    @property
    def observed(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        return ~self.stockout

    def day(self, i: int) -> date:
        return self.start + timedelta(days=i)


def day_expr(session: Session) -> Any:
    """The UTC calendar day of a movement, in the session's SQL dialect."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Movement.created_at)
    return cast(func.timezone("UTC", Movement.created_at), Date)


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=_UTC)


def series_keys(
    session: Session,
    *,
    start: date,
    end: date,
    sku: str | None = None,
    location: str | None = None,
    with_sales: bool = True,
) -> list[tuple[str, str]]:
    """Sorted (sku, location) pairs with a sale (or, `with_sales=False`, any movement)
    in [start, end)."""
    q = select(Movement.sku, Movement.location).where(
        Movement.created_at >= midnight(start), Movement.created_at < midnight(end)
    )
    if with_sales:
        q = q.where(Movement.type.in_(SALE_TYPES))
    if sku is not None:
        q = q.where(Movement.sku == sku)
    if location is not None:
        q = q.where(Movement.location == location)
    return sorted((s, loc) for s, loc in session.execute(q.distinct()))


def load_panel(
    session: Session, *, keys: Sequence[tuple[str, str]], start: date, end: date
) -> Panel:
    """The daily panel of `keys` over [start, end): one query, grouped by day."""
    n, t = len(keys), (end - start).days
    index = {k: i for i, k in enumerate(keys)}
    sold = np.zeros((n, t), dtype=np.int64)
    returned = np.zeros((n, t), dtype=np.int64)
    have = np.zeros((n, t), dtype=bool)
    low = np.zeros((n, t), dtype=np.int64)
    close_avail = np.zeros((n, t), dtype=np.int64)
    close_oh = np.zeros((n, t), dtype=np.int64)
    open_avail = np.zeros((n, t), dtype=np.int64)
    open_oh = np.zeros((n, t), dtype=np.int64)
    if n and t > 0:
        day = day_expr(session).label("day")
        avail = Movement.on_hand_after - Movement.locked_after
        rank = (Movement.sku, Movement.location, day)
        inner = (
            select(
                Movement.sku,
                Movement.location,
                day,
                Movement.type,
                Movement.delta_on_hand,
                avail.label("avail"),
                Movement.on_hand_after.label("oh"),
                (avail - Movement.delta_on_hand + Movement.delta_locked).label("open_avail"),
                (Movement.on_hand_after - Movement.delta_on_hand).label("open_oh"),
                func.row_number()
                .over(partition_by=rank, order_by=Movement.id.asc())
                .label("first"),
                func.row_number()
                .over(partition_by=rank, order_by=Movement.id.desc())
                .label("last"),
            )
            .where(
                Movement.created_at >= midnight(start),
                Movement.created_at < midnight(end),
                _key_filter(keys),
            )
            .subquery()
        )
        c = inner.c
        q = select(
            c.sku,
            c.location,
            c.day,
            func.sum(case((c.type.in_(SALE_TYPES), -c.delta_on_hand), else_=0)),
            func.sum(case((c.type.in_(RETURN_TYPES), c.delta_on_hand), else_=0)),
            func.min(c.avail),
            func.max(case((c.last == 1, c.avail))),
            func.max(case((c.last == 1, c.oh))),
            func.max(case((c.first == 1, c.open_avail))),
            func.max(case((c.first == 1, c.open_oh))),
        ).group_by(c.sku, c.location, c.day)
        for s, loc, d, so, ret, lo, ca, co, oa, oo in session.execute(q):
            i = index.get((s, loc))
            if i is None:
                continue
            j = ((d if isinstance(d, date) else date.fromisoformat(str(d))) - start).days
            sold[i, j], returned[i, j] = int(so or 0), int(ret or 0)
            have[i, j] = True
            low[i, j], close_avail[i, j], close_oh[i, j] = int(lo), int(ca), int(co)
            open_avail[i, j], open_oh[i, j] = int(oa), int(oo)
    # Carry levels over days without movements, in array operations (a Python loop over
    # series x days cost more than the fit): `last_le` is the latest day <= j with a
    # movement, `last_lt` the latest before j; before a series' first movement in the
    # window, that movement's opening level holds.
    rows = np.arange(n)[:, None]
    days = np.broadcast_to(np.arange(t), (n, t))
    last_le = np.maximum.accumulate(np.where(have, days, -1), axis=1)
    last_lt = np.concatenate([np.full((n, 1), -1), last_le[:, :-1]], axis=1)
    first = np.where(have.any(axis=1), have.argmax(axis=1), 0)[:, None]
    before_avail = np.where(last_lt >= 0, close_avail[rows, last_lt], open_avail[rows, first])
    opening = np.where(have, open_avail, before_avail)
    stockout = np.where(have, np.minimum(low, opening) <= 0, before_avail <= 0)
    close = np.where(last_le >= 0, close_oh[rows, last_le], open_oh[rows, first])
    empty = ~have.any(axis=1)
    stockout[empty] = False
    close[empty] = 0
    return Panel(list(keys), start, sold, returned, close, stockout)


def _key_filter(keys: Sequence[tuple[str, str]]) -> Any:
    """WHERE (sku, location) among `keys`: by SKU when there are many (one IN list the
    planner can use the (sku, location) index with), exact pairs when few."""
    if len(keys) <= 50:
        return or_(*(and_(Movement.sku == s, Movement.location == loc) for s, loc in keys))
    skus = sorted({s for s, _ in keys})
    if len(skus) * 2 >= len(keys):
        return Movement.sku.in_(skus)
    return tuple_(Movement.sku, Movement.location).in_(list(keys))
