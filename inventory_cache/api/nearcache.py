"""In-process near-cache of availability answers, at most `INVENTORY_NEAR_CACHE_MS` stale.

Product pages read far more than anything writes, and the HTTP layer, not Redis, is the
ceiling of the read path (PERF.md). So each API process keeps the *encoded* JSON answer
per SKU for a few hundred milliseconds, and concurrent misses of one SKU share a single
Redis read (single flight), which the engine's batcher coalesces with other SKUs' reads
into pipelines. An entry's age counts from the moment its read was *sent*, so no answer
is ever older than the configured staleness. Errors (`not_ready`) are never cached.

Only availability reads come through here: reservations, transfers and every write run
their checks inside Lua on the live state, never on this cache.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import orjson

from inventory_cache.engine import StockEngine
from inventory_cache.models import Availability

Clock = Callable[[], float]


def encode(a: Availability) -> bytes:
    return orjson.dumps(
        {"sku": a.sku, "available": a.available, "in_stock": a.in_stock, "locations": a.locations}
    )


class NearCache:
    def __init__(
        self,
        engine: StockEngine,
        *,
        max_staleness_ms: int,
        max_entries: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = max_staleness_ms / 1000
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._loading: dict[str, asyncio.Task[bytes]] = {}
        self.hits = 0
        self.misses = 0

    async def one(self, sku: str) -> bytes:
        """The availability JSON of one SKU."""
        entry = self._entries.get(sku)
        if entry is not None and entry[0] > self._clock():
            self.hits += 1
            return entry[1]
        task = self._loading.get(sku)
        if task is None:
            self.misses += 1
            # A task of its own, so a client that disconnects does not cancel the others' read.
            task = asyncio.create_task(self._read_one(sku))
            task.add_done_callback(_retrieve)
            self._loading[sku] = task
        else:
            self.hits += 1
        return await asyncio.shield(task)

    async def many(self, skus: Sequence[str]) -> bytes:
        """`{"items": [...]}` in request order; the missing SKUs read in one engine call."""
        now = self._clock()
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for sku in dict.fromkeys(skus):
            entry = self._entries.get(sku)
            if entry is not None and entry[0] > now:
                found[sku] = entry[1]
            else:
                missing.append(sku)
        self.hits += len(found)
        if missing:
            self.misses += len(missing)
            started = self._clock()
            fresh = await self._engine.availability_many(missing)
            for a in fresh:
                found[a.sku] = self._store(a.sku, encode(a), started)
        return b'{"items":[' + b",".join(found[s] for s in skus) + b"]}"

    async def _read_one(self, sku: str) -> bytes:
        started = self._clock()
        try:
            body = encode(await self._engine.availability(sku))
        finally:
            del self._loading[sku]
        return self._store(sku, body, started)

    def _store(self, sku: str, body: bytes, started: float) -> bytes:
        if self._ttl <= 0:
            return body
        self._entries.pop(sku, None)
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest refresh goes first
        self._entries[sku] = (started + self._ttl, body)
        return body


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a failed read as seen: its waiters got the error, or all went away."""
    if not task.cancelled():
        task.exception()
