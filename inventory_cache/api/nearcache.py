"""In-process near-cache of availability answers, never staler than `INVENTORY_NEAR_CACHE_MS`.

Product pages read far more than anything writes, and the HTTP layer, not Redis, is the
ceiling of the read path (BENCHMARKS.md). So each API process keeps the *encoded* JSON answer
per SKU, and concurrent misses of one SKU share a single Redis read (single flight),
which the engine's batcher coalesces with other SKUs' reads into pipelines. Errors
(`not_ready`) are never cached. Only availability reads come through here: reservations,
transfers and every write decide inside Lua on the live state, never on this cache.

Two ways an entry stays valid, both within the staleness bound:

- **Time** (always): an entry lives `max_staleness` from the moment its read was *sent*.
- **Invalidation** (`Tracker`, single Redis only): Redis tells this process about every
  change of a key of a slot group (`CLIENT TRACKING ... BCAST` with one prefix,
  invalidations redirected to a subscribed connection), of which it keeps the stock
  hashes and readiness markers, so an entry lives until its SKU changes (at most
  `TRACKED_TTL_S`). The bound still holds because the tracker PINGs its connection every
  quarter of the staleness: Redis queues an invalidation before it answers a later PING
  on the same connection, so once the PONG of a PING sent at time *s* is in, every change
  before *s* has been applied here. Past its time bound, an entry is served only while
  the last confirmed PING is younger than `max_staleness` (an overloaded event loop that
  reads invalidations late falls back to the time bound); losing the connection drops
  every entry. A read that an invalidation of its SKU overtook keeps only the time bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from inventory_cache.engine import StockEngine
from inventory_cache.keys import Keys
from inventory_cache.models import Availability

Clock = Callable[[], float]
TRACKED_TTL_S = 30.0
MAX_UNANSWERED_PINGS = 8
log = logging.getLogger(__name__)


def encode(a: Availability) -> bytes:
    body: dict[str, object] = {
        "sku": a.sku,
        "available": a.available,
        "in_stock": a.in_stock,
        "locations": a.locations,
    }
    if a.available_to_promise:
        body["available_to_promise"] = [{"date": d, "qty": q} for d, q in a.available_to_promise]
    return orjson.dumps(body)


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
        # sku → (body, valid until by time, valid until while invalidations are confirmed)
        self._entries: dict[str, tuple[bytes, float, float]] = {}
        self._loading: dict[str, asyncio.Task[bytes]] = {}
        self._reading: dict[str, int] = {}  # reads in flight per SKU (one() and many())
        self._overtaken: set[str] = set()  # SKUs invalidated while a read was in flight
        self._tracking_since: float | None = None
        self._confirmed_at = float("-inf")
        self.hits = 0
        self.misses = 0

    @property
    def staleness_s(self) -> float:
        return self._ttl

    @property
    def tracking(self) -> bool:
        """Whether Redis's invalidations are being received."""
        return self._tracking_since is not None

    def _fresh(self, entry: tuple[bytes, float, float], now: float) -> bool:
        return entry[1] > now or (entry[2] > now and now - self._confirmed_at <= self._ttl)

    async def one(self, sku: str) -> bytes:
        """The availability JSON of one SKU."""
        entry = self._entries.get(sku)
        if entry is not None and self._fresh(entry, self._clock()):
            self.hits += 1
            return entry[0]
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
            if entry is not None and self._fresh(entry, now):
                found[sku] = entry[0]
            else:
                missing.append(sku)
        self.hits += len(found)
        if missing:
            self.misses += len(missing)
            started = self._begin(missing)
            try:
                fresh = await self._engine.availability_many(missing)
            finally:
                self._end(missing)
            for a in fresh:
                found[a.sku] = self._store(a.sku, encode(a), started, bool(a.components))
        return b'{"items":[' + b",".join(found[s] for s in skus) + b"]}"

    async def _read_one(self, sku: str) -> bytes:
        started = self._begin((sku,))
        try:
            a = await self._engine.availability(sku)
        finally:
            del self._loading[sku]
            self._end((sku,))
        return self._store(sku, encode(a), started, bool(a.components))

    def _begin(self, skus: Sequence[str]) -> tuple[float, bool]:
        """When a read is sent, and whether invalidations were being received then."""
        for sku in skus:
            self._reading[sku] = self._reading.get(sku, 0) + 1
        return self._clock(), self._tracking_since is not None

    def _end(self, skus: Sequence[str]) -> None:
        for sku in skus:
            left = self._reading[sku] - 1
            if left:
                self._reading[sku] = left
            else:
                del self._reading[sku]

    def _store(
        self, sku: str, body: bytes, started: tuple[float, bool], bundle: bool = False
    ) -> bytes:
        """A bundle's answer keeps the time bound only: it follows its components' stock
        keys, whose invalidations name the components, not the bundle."""
        if self._ttl <= 0:
            return body
        at, tracked = started
        tracked = tracked and not bundle
        if sku in self._overtaken:
            tracked = False
            if sku not in self._reading:
                self._overtaken.discard(sku)
        tracked = tracked and self._tracking_since is not None and self._tracking_since <= at
        self._entries.pop(sku, None)
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest refresh goes first
        self._entries[sku] = (body, at + self._ttl, at + TRACKED_TTL_S if tracked else at)
        return body

    # ------------------------------------------------------------------ invalidation
    def tracking_started(self, at: float) -> None:
        self._tracking_since = at
        self._confirmed_at = at

    def confirmed(self, ping_sent_at: float) -> None:
        """Every change before `ping_sent_at` has been invalidated here."""
        self._confirmed_at = max(self._confirmed_at, ping_sent_at)

    def tracking_lost(self) -> None:
        self._tracking_since = None
        self._confirmed_at = float("-inf")
        self.invalidate_all()

    def invalidate(self, sku: str) -> None:
        self._entries.pop(sku, None)
        if sku in self._reading:
            self._overtaken.add(sku)

    def invalidate_all(self) -> None:
        self._entries.clear()
        self._overtaken.update(self._reading)


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a failed read as seen: its waiters got the error, or all went away."""
    if not task.cancelled():
        task.exception()


class Tracker:
    """Feeds a NearCache with Redis's invalidations; reconnects until cancelled."""

    CHANNEL = b"__redis__:invalidate"

    def __init__(
        self, cache: NearCache, redis_url: str, keys: Keys, *, clock: Clock = time.monotonic
    ) -> None:
        self._cache = cache
        self._params: dict[str, Any] = dict(parse_url(redis_url))
        self._params.pop("connection_class", None)
        self._keys = keys
        self._clock = clock
        self._interval = max(cache.staleness_s / 4, 0.005)
        self.client_id: int | None = None  # of the connection receiving invalidations

    def prefixes(self) -> list[str]:
        """Every key of every group, in one prefix; `_apply` keeps the stock hashes and
        readiness markers. Redis compares each key that anyone writes with each broadcast
        prefix in turn: the two prefixes per group this once asked for (512 by default) made
        every write inside a script cost about 20 µs instead of 0.3, so a reservation's
        handful of writes cost Redis more than everything else it does."""
        return [self._keys.tagged_prefix()]

    async def run(self) -> None:
        """Until cancelled; after a failure, retries after 1 s, doubling up to 30 s."""
        backoff = 1.0
        while True:
            try:
                await self._session()
            except (RedisError, OSError) as exc:
                log.warning("near-cache invalidations lost (%s): time bound only", exc)
            finally:
                if self._cache.tracking:
                    backoff = 1.0  # the session had worked: retry soon
                self._cache.tracking_lost()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _session(self) -> None:
        sub, ctl = Connection(**self._params), Connection(**self._params)
        try:
            await sub.connect()  # type: ignore[no-untyped-call]
            await ctl.connect()  # type: ignore[no-untyped-call]
            await sub.send_command("CLIENT", "ID")
            sub_id = self.client_id = await sub.read_response()
            await sub.send_command("SUBSCRIBE", self.CHANNEL)
            await sub.read_response()
            args: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", sub_id, "BCAST"]
            for p in self.prefixes():
                args += ["PREFIX", p]
            await ctl.send_command(*args)
            await ctl.read_response()
            # Reads sent from now on reach Redis after tracking is on.
            self._cache.tracking_started(self._clock())
            await self._listen(sub)
        finally:
            await sub.disconnect()
            await ctl.disconnect()

    async def _listen(self, sub: Connection) -> None:
        """PINGs on a fixed beat, not after each PONG, so a busy event loop delays the
        confirmations by its lag once, not once per round."""
        pings: list[float] = []  # send times of PINGs not yet answered, in order
        next_ping = self._clock()
        while True:
            now = self._clock()
            if now >= next_ping:
                if len(pings) >= MAX_UNANSWERED_PINGS:
                    raise RedisConnectionError("invalidation connection stopped answering")
                pings.append(now)
                await sub.send_command("PING")
                next_ping = now + self._interval
            message = await sub.read_response(timeout=max(next_ping - self._clock(), 0.001))
            if message is None:
                continue
            kind = message[0]
            if kind == b"pong":
                self._cache.confirmed(pings.pop(0))
            elif kind == b"message":
                self._apply(message[2])

    def _apply(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHDB / FLUSHALL
            self._cache.invalidate_all()
            return
        for key in keys:
            sku, ready = self._keys.stock_change(key)
            if sku is not None:
                self._cache.invalidate(sku)
            elif ready:  # a readiness marker changed: warmup or a flush
                self._cache.invalidate_all()
