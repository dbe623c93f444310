"""Till and scanner events of one store, a batch at a time (`POST /v1/pos/events`).

A batch holds 1 to 1,000 events `{event_id, type, sku | barcode, qty}`:

- `sale` takes `qty` off on_hand and is never refused: the goods have already left, so
  on_hand may fall below locked (or 0). The result then reports `oversold` (locked minus
  on_hand), the state the alerts show as oversold: online orders exceed what is there.
- `return` puts `qty` back (restocked at the till).
- `count` sets on_hand to `qty` (an RFID or hand count, 0 allowed); the ledger records
  the difference, as an adjustment with reason `count`.

Each event stands alone: a malformed one, a bad check digit or an unknown barcode fails
that event (its result carries the error's code) and the others still apply. Each is
idempotent by its `event_id` (per SKU, as every movement is idempotent by its ref): a
batch sent again replays the first results and changes nothing.

Order. Events are applied in the order given for each SKU. The engine pipelines
concurrent calls and may send them over several connections at once, so two calls in
flight together have no order; the batch is therefore cut into *waves*, wave k holding
the k-th event of every SKU, and a wave is sent only after the previous one has been
applied. A batch over many SKUs is a few round trips; one over a single SKU is one per
event. Events of different SKUs touch different keys, so their relative order changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from inventory_cache import validation as v
from inventory_cache.barcodes import BarcodeStore, normalize
from inventory_cache.engine import StockEngine
from inventory_cache.errors import InventoryError, NotFound, NotReady, ValidationError
from inventory_cache.models import Level

log = logging.getLogger(__name__)

MAX_EVENTS = 1000
EventType = Literal["sale", "return", "count"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

Status = Literal["applied", "replayed", "error"]


@dataclass(frozen=True, slots=True)
class PosEvent:
    """One event after its own validation, with its SKU (or the barcode to resolve)."""

    index: int
    event_id: str
    type: str
    qty: int
    sku: str | None
    barcode: str | None  # GTIN-14


@dataclass(frozen=True, slots=True)
class PosResult:
    """What became of one event, in the batch's order."""

    index: int
    event_id: str | None
    status: Status
    sku: str | None = None
    level: Level | None = None
    error: InventoryError | None = None

    @property
    def oversold(self) -> int:
        """Units promised online (locked) that on_hand no longer covers."""
        if self.level is None:
            return 0
        return max(0, self.level.locked - max(0, self.level.on_hand))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "event_id": self.event_id}
        out["status"] = self.status
        if self.sku is not None:
            out["sku"] = self.sku
        if self.level is not None:
            lv = self.level
            out |= {
                "location": lv.location,
                "on_hand": lv.on_hand,
                "locked": lv.locked,
                "safety_stock": lv.safety_stock,
                "available": lv.available,
                "oversold": self.oversold,
            }
        if self.error is not None:
            out |= {"code": self.error.code, "detail": self.error.detail}
            out |= {k: val for k, val in self.error.extra.items() if k == "field"}
        return out


def check_event(index: int, raw: Any) -> PosEvent:
    """Validate one event on its own; the `field` of an error names it, e.g. `events[3].qty`."""
    at = f"events[{index}]"
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{at} must be an object", field=at)
    event_id = v.ident(raw.get("event_id"), f"{at}.event_id")
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        raise ValidationError(f"{at}.type must be sale, return or count", field=f"{at}.type")
    if kind == "count":
        qty = v.on_hand(raw.get("qty"), f"{at}.qty")
    else:
        qty = v.qty(raw.get("qty"), f"{at}.qty")
    sku, barcode = raw.get("sku"), raw.get("barcode")
    if (sku is None) == (barcode is None):
        raise ValidationError(f"{at} needs exactly one of sku and barcode", field=f"{at}.sku")
    if sku is not None:
        return PosEvent(index, event_id, str(kind), qty, v.ident(sku, f"{at}.sku"), None)
    return PosEvent(index, event_id, str(kind), qty, None, normalize(barcode, f"{at}.barcode"))


def waves(events: Sequence[tuple[PosEvent, str]]) -> list[list[tuple[PosEvent, str]]]:
    """Wave k holds the k-th event of every SKU, so a SKU's events keep their order."""
    seen: dict[str, int] = defaultdict(int)
    out: list[list[tuple[PosEvent, str]]] = []
    for ev, sku in events:
        k = seen[sku]
        seen[sku] += 1
        if k == len(out):
            out.append([])
        out[k].append((ev, sku))
    return out


async def apply_batch(
    engine: StockEngine,
    barcodes: BarcodeStore,
    *,
    location: Any,
    events: Any,
) -> list[PosResult]:
    """Apply a store's batch; one result per event, in the order given.

    Raises `ValidationError` for a bad location or a batch that is not a list of 1 to
    1,000 events (nothing is applied), and `NotReady` when Redis refuses writes (what was
    applied before stays applied; sending the batch again replays it).
    """
    location = v.ident(location, "location")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise ValidationError(f"events must be a list of 1 to {MAX_EVENTS} events", field="events")
    results: dict[int, PosResult] = {}
    valid: list[PosEvent] = []
    for i, raw in enumerate(events):
        try:
            valid.append(check_event(i, raw))
        except ValidationError as exc:
            event_id = raw.get("event_id") if isinstance(raw, Mapping) else None
            results[i] = PosResult(
                i, event_id if isinstance(event_id, str) else None, "error", error=exc
            )
    codes = {ev.barcode for ev in valid if ev.barcode is not None}
    skus = await barcodes.resolve_many(codes) if codes else {}
    ready: list[tuple[PosEvent, str]] = []
    for ev in valid:
        sku = ev.sku if ev.barcode is None else skus.get(ev.barcode)
        if sku is None:
            results[ev.index] = PosResult(
                ev.index,
                ev.event_id,
                "error",
                error=NotFound(f"no SKU for barcode {ev.barcode}", field=f"events[{ev.index}]"),
            )
        else:
            ready.append((ev, sku))
    for wave in waves(ready):
        done = await asyncio.gather(
            *(
                engine.pos_event(
                    event_id=ev.event_id, type=ev.type, sku=sku, location=location, qty=ev.qty
                )
                for ev, sku in wave
            ),
            return_exceptions=True,
        )
        for (ev, sku), r in zip(wave, done, strict=True):
            if isinstance(r, NotReady):
                raise r
            if isinstance(r, InventoryError):
                results[ev.index] = PosResult(ev.index, ev.event_id, "error", sku, error=r)
            elif isinstance(r, BaseException):
                raise r
            else:
                results[ev.index] = PosResult(
                    ev.index, ev.event_id, "replayed" if r.replayed else "applied", sku, r
                )
    out = [results[i] for i in range(len(events))]
    oversold = {r.sku: r.oversold for r in out if r.status == "applied" and r.oversold}
    if oversold:
        log.warning("pos: at %s, sales left online orders uncovered: %s", location, oversold)
    return out
