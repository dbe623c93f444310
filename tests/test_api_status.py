"""`/readyz` and `/metrics` answer from a measurement one background task per process
makes each INVENTORY_STATUS_REFRESH_SECONDS: a flood of probes and scrapes costs Redis and
PostgreSQL nothing per request (they used to run a script per slot group, an `XINFO
GROUPS` per stream and a query on every call)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from inventory_cache import lag
from inventory_cache.api.postgres import Postgres
from inventory_cache.engine import StockEngine
from tests.support.api import Database, serving


async def test_probes_and_scrapes_cost_no_store_call_per_request(
    real_redis: Any, prefix: str, api_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"check_ready": 0, "lag": 0, "ping": 0}

    def counted(name: str, real: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(StockEngine, "check_ready", counted("check_ready", StockEngine.check_ready))
    monkeypatch.setattr(lag, "measure", counted("lag", lag.measure))
    monkeypatch.setattr(Postgres, "ping", counted("ping", Postgres.ping))
    async with serving(real_redis, prefix, api_database, status_refresh_seconds=0.5) as api:

        async def client() -> list[int]:
            out = []
            for _ in range(10):
                out.append((await api.client.get("/readyz")).status_code)
                out.append((await api.client.get("/metrics")).status_code)
            return out

        started = time.monotonic()
        answers = await asyncio.gather(*(client() for _ in range(20)))
        elapsed = time.monotonic() - started

    assert {s for one in answers for s in one} == {200}
    rounds = elapsed / 0.5 + 2  # the background task's measurements, and no more
    assert 1 <= calls["check_ready"] <= rounds, (calls, elapsed)
    assert 1 <= calls["lag"] <= rounds and 1 <= calls["ping"] <= rounds, (calls, elapsed)
