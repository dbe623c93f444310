"""Where the warehouse system's idea of on_hand comes from: one small interface, two adapters.

A snapshot is the WMS's on_hand per (sku, location) at one instant (`taken_at`, ms since
the epoch, on a clock kept in sync with ours by NTP), plus the movements the WMS had
applied by then but not yet delivered to us (`in_flight`: a shipment packed and gone, its
`ship` call to this service still queued in the WMS's outbox). Reconciliation needs both
to compare the two sides at one consistent point (see `reconcile.py`).

HTTP JSON (`GET <url>`)::

    {"taken_at": 1800000000000,
     "items": [{"sku": "A", "location": "north", "on_hand": 10}, ...],
     "in_flight": [{"ref": "order-7", "sku": "A", "location": "north", "delta": -1,
                    "at": 1799999999000}, ...]}

`taken_at` may also be an ISO-8601 string; `in_flight` may be omitted.

CSV file (a nightly export): a header `sku,location,on_hand`, one row per (sku, location).
An export has no outbox, so it carries no movements in flight: export it when the
warehouse is quiet. The snapshot time is a first line `# taken_at=<ms or ISO-8601>` when
present, else the file's modification time (write the file elsewhere and rename it into
place, so the time is that of the complete file).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from inventory_cache import validation as v
from inventory_cache.errors import ValidationError
from inventory_cache.settings import Settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WmsError(Exception):
    """The WMS could not be read or answered something that is not a snapshot."""


class WmsNotConfigured(WmsError):
    """No WMS is set: an operator's omission, which no retry will cure."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """A movement the WMS applied at `at` (ms) and had not yet delivered to us."""

    ref: str
    sku: str
    location: str
    delta: int
    at: int


@dataclass(frozen=True, slots=True)
class WmsSnapshot:
    taken_at: int  # ms since the epoch
    on_hand: dict[tuple[str, str], int]
    in_flight: list[InFlight] = field(default_factory=list)
    source: str = ""


class WmsSource(Protocol):
    """Anything that can produce a snapshot; `describe()` names it in the run record."""

    def describe(self) -> str: ...

    async def snapshot(self) -> WmsSnapshot: ...


def _time_ms(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise WmsError(f"{what} must be ms since the epoch or ISO-8601")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return (when - EPOCH) // timedelta(milliseconds=1)
    raise WmsError(f"{what} must be ms since the epoch or ISO-8601, not {value!r}")


def _item(sku: Any, location: Any, on_hand: Any, where: str) -> tuple[tuple[str, str], int]:
    try:
        v.ident(sku, "sku"), v.ident(location, "location")
        count = int(on_hand) if isinstance(on_hand, str) else on_hand
        v.on_hand(count, "on_hand")
    except (ValidationError, ValueError) as exc:
        raise WmsError(f"{where}: {exc}") from None
    return (sku, location), count


def parse_json_snapshot(body: bytes, source: str = "") -> WmsSnapshot:
    """Validate a JSON snapshot: every id and count checked before anything is compared."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WmsError(f"snapshot is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise WmsError('snapshot must be an object with "taken_at" and "items"')
    taken_at = _time_ms(doc.get("taken_at"), "taken_at")
    on_hand: dict[tuple[str, str], int] = {}
    for i, it in enumerate(doc["items"]):
        if not isinstance(it, dict):
            raise WmsError(f"items[{i}] must be an object")
        key, count = _item(it.get("sku"), it.get("location"), it.get("on_hand"), f"items[{i}]")
        if key in on_hand:
            raise WmsError(f"items[{i}]: {key} appears twice")
        on_hand[key] = count
    in_flight = []
    for i, m in enumerate(doc.get("in_flight") or []):
        try:
            in_flight.append(
                InFlight(
                    ref=str(m["ref"]),
                    sku=str(m["sku"]),
                    location=str(m["location"]),
                    delta=int(m["delta"]),
                    at=_time_ms(m.get("at", taken_at), f"in_flight[{i}].at"),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WmsError(f"in_flight[{i}]: {exc}") from None
    return WmsSnapshot(taken_at, on_hand, in_flight, source)


def parse_csv_snapshot(text: str, default_taken_at: int, source: str = "") -> WmsSnapshot:
    taken_at = default_taken_at
    lines = text.splitlines()
    if lines and lines[0].startswith("#"):
        name, _, value = lines.pop(0).lstrip("# ").partition("=")
        if name.strip() == "taken_at":
            taken_at = _time_ms(value, "taken_at")
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if reader.fieldnames is None or not {"sku", "location", "on_hand"} <= set(reader.fieldnames):
        raise WmsError("CSV needs a header with sku, location, on_hand")
    on_hand: dict[tuple[str, str], int] = {}
    for row in reader:
        where = f"line {reader.line_num}"
        key, count = _item(row["sku"], row["location"], row["on_hand"], where)
        if key in on_hand:
            raise WmsError(f"{where}: {key} appears twice")
        on_hand[key] = count
    return WmsSnapshot(taken_at, on_hand, [], source)


class HttpJsonWms:
    """GETs a JSON snapshot; the URL is configuration (an operator's), not client input."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._headers = headers or {}
        self._client = client

    def describe(self) -> str:
        return f"http:{self.url}"

    async def snapshot(self) -> WmsSnapshot:
        try:
            if self._client is not None:
                resp = await self._client.get(self.url, headers=self._headers)
            else:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    resp = await client.get(self.url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise WmsError(f"cannot read {self.url}: {exc}") from None
        if resp.status_code != 200:
            raise WmsError(f"{self.url} answered {resp.status_code}")
        return parse_json_snapshot(resp.content, self.describe())


class CsvFileWms:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"csv:{self.path}"

    async def snapshot(self) -> WmsSnapshot:
        def read() -> tuple[str, int]:
            with self.path.open(encoding="utf-8", newline="") as f:
                mtime = os.fstat(f.fileno()).st_mtime_ns // 1_000_000
                return f.read(), mtime

        try:
            text, mtime = await asyncio.to_thread(read)
        except OSError as exc:
            raise WmsError(f"cannot read {self.path}: {exc}") from None
        return parse_csv_snapshot(text, mtime, self.describe())


def wms_from_settings(settings: Settings) -> WmsSource:
    if settings.wms_url:
        return HttpJsonWms(settings.wms_url)
    if settings.wms_csv_path:
        return CsvFileWms(settings.wms_csv_path)
    raise WmsNotConfigured("no WMS configured: set INVENTORY_WMS_URL or INVENTORY_WMS_CSV_PATH")
