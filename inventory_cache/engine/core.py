"""The engine's core: its state, script runner, readiness and rate limit; the helpers
every capability shares (clock, fingerprints, reply parsers)."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache.batcher import Batcher
from inventory_cache.errors import NotReady
from inventory_cache.incoming import IncomingStock
from inventory_cache.keys import Keys
from inventory_cache.models import Component, Level
from inventory_cache.script_calls import Call
from inventory_cache.script_exec import AsyncScripts
from inventory_cache.scripts import Script, scripts_for
from inventory_cache.settings import Settings
from persistence.events import available

if TYPE_CHECKING:
    from inventory_cache.archive import OrderArchive


Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def fingerprint(body: Any) -> str:
    return hashlib.sha1(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


_LEVEL_SLOT = {b"o:": 0, b"l:": 1, b"s:": 2}


def stock_fields(raw: Mapping[bytes, bytes]) -> tuple[dict[bytes, list[int]], bool]:
    """A stock hash (`o:<loc>`, `l:<loc>`, `s:<loc>`, `v`, ...) read in one pass: each
    location's [on_hand, locked, safety_stock], and whether the SKU is plain (no bundle
    definition `bdef`, no incoming stock `n:<ref>`), so its availability is its levels'."""
    levels: dict[bytes, list[int]] = {}
    plain = True
    for field, value in raw.items():
        kind = field[:2]
        slot = _LEVEL_SLOT.get(kind)
        if slot is not None:
            levels.setdefault(field[2:], [0, 0, 0])[slot] = int(value)
        elif kind == b"n:" or (field == b"bdef" and value):
            plain = False
    return levels, plain


def parse_stock(sku: str, raw: Mapping[bytes, bytes]) -> dict[str, Level]:
    """Turn a stock hash into levels by location."""
    levels, _ = stock_fields(raw)
    out = {}
    for raw_loc, (o, lk, s) in sorted(levels.items()):
        loc = raw_loc.decode()
        out[loc] = Level(sku, loc, o, lk, s, available(o, lk, s))
    return out


def _level(reply: dict[str, Any]) -> Level:
    return Level(
        sku=reply["sku"],
        location=reply["location"],
        on_hand=int(reply["on_hand"]),
        locked=int(reply["locked"]),
        safety_stock=int(reply["safety_stock"]),
        available=int(reply["available"]),
        replayed=bool(reply.get("replayed", False)),
    )


def _components(raw: bytes | str | None) -> list[Component] | None:
    """A bundle definition as Redis keeps it (`c`); None when the SKU is no bundle."""
    if not raw:
        return None
    return [Component(sku, int(qty)) for sku, qty in orjson.loads(raw)]


class EngineCore:
    """What every capability of `StockEngine` builds on: clients, keys, scripts."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        *,
        clock: Clock = wall_clock_ms,
        scripts: dict[str, Script] | None = None,
        redis_clock: bool | None = None,
        one_script: bool = True,
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix, settings.slot_groups)
        self.scripts = scripts or scripts_for(client)
        self.batcher = Batcher(client, settings.max_inflight_pipelines, settings.pipeline_flush_at)
        self.executor = AsyncScripts(self.batcher, self.scripts)
        self._cluster = _is_cluster(client)
        # False sends every reservation down the multi-script path (the one an order
        # spanning groups on a cluster takes), so its crash recovery is testable anywhere.
        self._one_script = one_script
        self.now = clock
        # The expiry sweep reads Redis's clock (`sweep_now`) unless a test injected a clock
        # for everything; `redis_clock=True` keeps Redis's clock with an injected one.
        self._redis_clock = clock is wall_clock_ms if redis_clock is None else redis_clock
        self._retention_ms = settings.idempotency_retention_seconds * 1000  # movements
        self._finished_ms = settings.finished_retention_seconds * 1000  # orders, transfers
        # Finished orders past that window, from PostgreSQL (`archive.py`); the API sets it.
        self.archive: OrderArchive | None = None
        self._priority = " ".join(settings.location_priority)
        self._token_prefix = secrets.token_hex(6)
        self._attempts = itertools.count()
        self.incoming = IncomingStock(self)

    def _attempt_token(self) -> str:
        """Unique per attempt: a random prefix per engine, then a counter (cheaper than
        drawing from the OS for every reservation)."""
        return f"{self._token_prefix}{next(self._attempts):x}"

    async def run(self, call: Call) -> Any:
        """Run one script call (`script_calls`); its `err` reply raised as the typed error."""
        return await self.executor.run(call)

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several script calls in one pipeline; each reply, or the exception it
        stands for."""
        return await self.executor.run_many(calls)

    async def mark_ready(self, groups: Iterable[int] | None = None) -> None:
        now = self.now()
        calls = [
            sc.mark_ready(ready=self.keys.ready(g), at=now)
            for g in groups or self.keys.all_groups()
        ]
        for r in await self.run_many(calls):
            if isinstance(r, BaseException):
                raise r

    async def check_ready(self) -> bool:
        """Runs a real script on every group: a lost script cache or a flushed Redis shows."""
        calls = [sc.check_ready(ready=self.keys.ready(g)) for g in self.keys.all_groups()]
        results = await self.run_many(calls)
        for r in results:
            if isinstance(r, NotReady):
                return False
            if isinstance(r, BaseException):
                raise r
        return True

    async def rate_limit(self, api_key_id: str, *, interval_ms: float, tolerance_ms: float) -> int:
        """Count one request of an API key against its limit (`rate_limit-1.lua`, GCRA).

        Args:
            api_key_id: the key's public id (`Principal.key_id`).
            interval_ms: emission interval, 1000 / requests per second.
            tolerance_ms: burst tolerance, (burst - 1) * interval_ms.
        Returns:
            0 when the request is allowed (and counted), else the milliseconds until it
            would be (nothing is counted).
        """
        reply = await self.run(
            sc.rate_limit(
                limiter=self.keys.rate_limit(api_key_id),
                now=self.now(),
                interval_ms=repr(interval_ms),
                tolerance_ms=repr(tolerance_ms),
            )
        )
        return 0 if reply["allowed"] else int(reply["retry_after_ms"])
