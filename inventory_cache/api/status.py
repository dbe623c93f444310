"""What `/readyz` and `/metrics` report about Redis, PostgreSQL and the worker, measured
by one background task per API process.

Measuring on each request made those routes the most expensive of the API: 256 scripts
and a query per `/readyz`, 256 `XINFO GROUPS` per scrape, so a few clients polling them
slowed the checkout. Here every `INVENTORY_STATUS_REFRESH_SECONDS` one task measures
(`redis_ready`, `postgres_up`, `lag.measure` and the slot groups behind the ledger,
side by side) and keeps a `Snapshot`; the
routes read it and cost no Redis call at all. The same task writes the API keys'
`last_used_at` every `LAST_USED_EVERY_S`, in one statement, unless PostgreSQL is away.

Readiness is Redis's alone (a load balancer must not pull an API process that can sell
because PostgreSQL is down); PostgreSQL's state is reported beside it (`degraded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from anyio import to_thread

from inventory_cache import behind, lag
from inventory_cache.api.postgres import Postgres
from inventory_cache.apikeys import Authenticator, record_last_used
from inventory_cache.engine import StockEngine
from inventory_cache.redis_policy import policy_refusal

log = logging.getLogger(__name__)

LAST_USED_EVERY_S = 30.0
POSTGRES_TIMEOUT_S = 3.0  # a ping that takes longer counts as PostgreSQL away


@dataclass(frozen=True, slots=True)
class Snapshot:
    redis_ready: bool
    postgres_up: bool
    lag: lag.Lag | None  # None: Redis could not be asked
    measured_at: float  # time.monotonic()
    behind: dict[int, str]  # slot group -> why it is behind the ledger
    policy_refusal: str | None  # Redis may evict our keys: why it must not be used


async def groups_behind(engine: StockEngine, postgres: Postgres) -> dict[int, str]:
    """The slot groups behind the ledger: those marked so, plus those a comparison of Redis
    with PostgreSQL's newest committed entries finds now (and marks, so their scripts refuse
    at once). Without PostgreSQL only the marks count."""
    try:
        return await behind.check_async(engine.client, postgres.engine, engine.keys)
    except Exception as exc:
        log.warning("readiness: slot groups behind the ledger not checked: %r", exc)
        return {}


async def redis_ready(engine: StockEngine) -> bool:
    """Redis can serve: reachable, scripts run, every slot group warmed up."""
    try:
        return await engine.check_ready()
    except Exception as exc:
        log.warning("readiness: Redis cannot serve: %r", exc)
        return False


class StatusMonitor:
    def __init__(
        self,
        engine: StockEngine,
        postgres: Postgres,
        auth: Authenticator,
        *,
        refresh_s: float,
    ) -> None:
        self._engine = engine
        self._postgres = postgres
        self._auth = auth
        self._refresh_s = refresh_s
        self._snapshot: Snapshot | None = None
        self._first = asyncio.Event()
        self._ping: asyncio.Task[bool] | None = None
        self._last_used_at = time.monotonic()

    async def current(self) -> Snapshot:
        """The latest measurement (the first one is awaited)."""
        await self._first.wait()
        assert self._snapshot is not None
        return self._snapshot

    async def run(self) -> None:
        while True:
            await self.refresh()
            if time.monotonic() - self._last_used_at >= LAST_USED_EVERY_S:
                await self.flush_last_used()
            await asyncio.sleep(self._refresh_s)

    async def refresh(self) -> Snapshot:
        ready, postgres, measured, late, refused = await asyncio.gather(
            redis_ready(self._engine),
            self.postgres_up(),
            self._lag(),
            groups_behind(self._engine, self._postgres),
            self._policy(),
        )
        self._snapshot = Snapshot(ready, postgres, measured, time.monotonic(), late, refused)
        self._first.set()
        return self._snapshot

    async def postgres_up(self) -> bool:
        """PostgreSQL answers a query within `POSTGRES_TIMEOUT_S`. A ping still stuck in
        its thread (an unanswered connect) is waited for, not doubled."""
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self._postgres.ping())
        try:
            return await asyncio.wait_for(asyncio.shield(self._ping), POSTGRES_TIMEOUT_S)
        except TimeoutError:
            return False

    async def _policy(self) -> str | None:
        try:
            return await policy_refusal(self._engine.client)
        except Exception as exc:
            log.warning("maxmemory-policy not read: %r", exc)
            return None

    async def _lag(self) -> lag.Lag | None:
        try:
            return await lag.measure(self._engine)
        except Exception as exc:
            log.warning("worker lag not measured: %r", exc)
            return None

    async def flush_last_used(self) -> None:
        """Write `last_used_at` of the keys seen since the last round; kept for the next
        round while PostgreSQL is away."""
        self._last_used_at = time.monotonic()
        used = self._auth.take_used()
        if not used:
            return
        if self._snapshot is not None and not self._snapshot.postgres_up:
            self._auth.give_back_used(used)
            return
        try:
            await to_thread.run_sync(record_last_used, self._postgres.engine, used)
        except Exception as exc:
            log.warning("last_used_at not written (kept for the next round): %r", exc)
            self._auth.give_back_used(used)

    async def close(self) -> None:
        """Write what is left of `last_used_at` (best effort) on shutdown."""
        with contextlib.suppress(Exception):
            await self.flush_last_used()
