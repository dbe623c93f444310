"""Sales and stock reports (scope `read`), JSON or CSV, read from PostgreSQL.

Every report answers `{"as_of", ..., "items": [flat rows]}`; with `?format=csv` or
`Accept: text/csv` the rows alone, as CSV with a header line. Windows are whole UTC days
before `until` (default: today), so a report for a closed period never changes.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from inventory_cache import reports
from inventory_cache.api.data.reports import Rows, report
from inventory_cache.api.deps import ReadKey, ServicesDep
from inventory_cache.api.problems import problem_responses
from inventory_cache.api.responses import json_response
from inventory_cache.api.schemas.common import Ident, iso_datetime
from inventory_cache.api.schemas.reports import ReportOut

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Format = Literal["json", "csv"]
SkuQ = Annotated[Ident | None, Query()]
LocationQ = Annotated[Ident | None, Query()]
UntilQ = Annotated[
    date | None,
    Query(
        ge=date(2000, 1, 1),
        le=date(2999, 12, 31),
        description="The window ends at the start of this UTC day (default today).",
    ),
]
FormatQ = Annotated[Format | None, Query(description="`csv` for CSV (or `Accept: text/csv`).")]
ERRORS = problem_responses(401, 403, 422, 503, s503="PostgreSQL unreachable (`not_ready`).")
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "sku,location,period,units\r\nphone-a,north,2026-11-27,3\r\n",
            }
        }
    }
}


def _now(until: date | None) -> datetime:
    if until is None:
        return datetime.now(UTC)
    return datetime.combine(until, datetime.min.time(), tzinfo=UTC)


def _wants_csv(request: Request, fmt: Format | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _cell(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso_datetime(v)
    return "" if v is None else v


def _answer(
    request: Request, fmt: Format | None, now: datetime, rows: Rows, **params: Any
) -> Response:
    if _wants_csv(request, fmt):
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
    items = [
        {k: iso_datetime(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
    ]
    return json_response({"as_of": iso_datetime(now), **params, "items": items})


@router.get(
    "/sales",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="Units sold, returned and net per sku, location and day or week",
)
async def sales(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    location: LocationQ = None,
    group: Annotated[
        Literal["day", "week"], Query(description="`week`: ISO weeks from Monday")
    ] = "day",
    days: Annotated[int, Query(ge=1, le=1100)] = 28,
    until: UntilQ = None,
    format: FormatQ = None,
) -> Response:
    """Sold = POS sales + shipped orders; returned = POS returns + restocked returns."""
    now = _now(until)
    start, end = reports.window(now, days)
    if group == "week" and start.weekday() != 0:
        start -= timedelta(days=start.weekday())  # whole weeks only
    rows = await services.postgres.run(
        report, reports.sales, start=start, end=end, grain=group, sku=sku, location=location
    )
    return _answer(
        request, format, now, rows, since=start.isoformat(), until=end.isoformat(), group=group
    )


@router.get(
    "/days-of-cover",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="How long the sellable stock lasts at the expected demand",
)
async def days_of_cover(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    location: LocationQ = None,
    window_days: Annotated[int, Query(ge=1, le=365)] = 28,
    until: UntilQ = None,
    format: FormatQ = None,
) -> Response:
    """Expected demand: the stored forecast's daily mean, else sales over `window_days`."""
    now = _now(until)
    rows = await services.postgres.run(
        report, reports.days_of_cover, now=now, window_days=window_days, sku=sku, location=location
    )
    return _answer(request, format, now, rows, window_days=window_days)


@router.get(
    "/turnover",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="Stock turnover: units sold over average on_hand",
)
async def turnover(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    location: LocationQ = None,
    days: Annotated[int, Query(ge=1, le=1100)] = 90,
    until: UntilQ = None,
    format: FormatQ = None,
) -> Response:
    """Average on_hand is the mean of the days' closing on_hand over the window."""
    now = _now(until)
    rows = await services.postgres.run(
        report, reports.turnover, now=now, days=days, sku=sku, location=location
    )
    return _answer(request, format, now, rows, days=days)


@router.get(
    "/dead-stock",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="Stock on hand with no sale in the last N days",
)
async def dead_stock(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    location: LocationQ = None,
    days: Annotated[int, Query(ge=1, le=3650)] = 90,
    until: UntilQ = None,
    format: FormatQ = None,
) -> Response:
    """`last_sale_at` is null (and `days_since_sale` too) when it never sold."""
    now = _now(until)
    rows = await services.postgres.run(
        report, reports.dead_stock, now=now, days=days, sku=sku, location=location
    )
    return _answer(request, format, now, rows, days=days)


@router.get(
    "/stockouts",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="Days out of stock and the sales estimated lost to them",
)
async def stockouts(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    location: LocationQ = None,
    days: Annotated[int, Query(ge=1, le=1100)] = 28,
    until: UntilQ = None,
    format: FormatQ = None,
) -> Response:
    """Lost units = mean daily demand of the days in stock x days out of stock, less what
    those days still sold."""
    now = _now(until)
    rows = await services.postgres.run(
        report, reports.stockouts, now=now, days=days, sku=sku, location=location
    )
    return _answer(request, format, now, rows, days=days)


@router.get(
    "/forecast-accuracy",
    response_model=ReportOut,
    responses={**ERRORS, **CSV_RESPONSE},
    summary="Backtest accuracy of the stored forecasts, per SKU",
)
async def forecast_accuracy(
    services: ServicesDep,
    request: Request,
    _: ReadKey,
    sku: SkuQ = None,
    format: FormatQ = None,
) -> Response:
    """MASE below 1 beats the weekly naive forecast; empty until a forecast run."""
    now = datetime.now(UTC)
    rows = await services.postgres.run(report, reports.forecast_accuracy, sku=sku)
    return _answer(request, format, now, rows)
