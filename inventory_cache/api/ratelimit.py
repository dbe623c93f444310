"""Per-API-key rate limit: `INVENTORY_RATE_LIMIT_PER_SECOND`, bursts of `..._BURST`.

The count lives in Redis (`rate_limit-1.lua`, GCRA), so the limit holds across every API
process and host, not per process. `deps.authenticate()` asks once a key is recognised;
anonymous public reads are never limited. Over the limit: 429 `rate_limited` with
`Retry-After` (whole seconds, rounded up), and the request changes nothing.

Off (rate 0, the default) there is no limiter object at all, so the hot paths make no
extra Redis call. If Redis cannot be asked, the request goes through (fail open: a
limiter must not turn a Redis hiccup into refused traffic); that is logged once per
outage, and again when Redis answers.

"Now" is the API process's clock, passed to the script: hosts whose clocks differ by d ms
see one key's allowance shifted by up to d ms (keep them NTP-synced). A replay of a stored
`Idempotency-Key` answer is served by the middleware before any route dependency runs,
so it is neither limited nor counted.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from inventory_cache.api.problems import RateLimited
from inventory_cache.engine import StockEngine
from inventory_cache.settings import Settings

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, engine: StockEngine, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("a rate limiter needs a positive rate and a burst of at least 1")
        self._engine = engine
        self.interval_ms = 1000.0 / per_second
        self.tolerance_ms = self.interval_ms * (burst - 1)
        self._failing = False

    @classmethod
    def from_settings(cls, engine: StockEngine, settings: Settings) -> RateLimiter | None:
        """None when the limit is off."""
        if settings.rate_limit_per_second <= 0:
            return None
        return cls(engine, settings.rate_limit_per_second, settings.rate_limit_burst)

    async def check(self, api_key_id: str) -> None:
        """Count one request of this key, or raise `RateLimited` (nothing counted)."""
        try:
            wait_ms = await self._engine.rate_limit(
                api_key_id, interval_ms=self.interval_ms, tolerance_ms=self.tolerance_ms
            )
        except (RedisError, OSError) as exc:
            if not self._failing:
                self._failing = True
                log.warning("rate limit not enforced: Redis unavailable (%r)", exc)
            return
        if self._failing:
            self._failing = False
            log.warning("rate limit enforced again: Redis answers")
        if wait_ms > 0:
            raise RateLimited(retry_after_s=-(-wait_ms // 1000))
