"""Selling through a PostgreSQL outage, end to end: real API processes, a real worker, and a
PostgreSQL cluster of the test's own that is stopped (`pg_ctl -m immediate stop`) under a
load of reservations, cancels and availability reads.

While it is down every request of a valid key is served (2xx, or 409 when stock runs out),
including a key created before the outage but first used during it and an API process
started during it; `/readyz` says `degraded` (200) and the lag gauge rises; a key revoked
meanwhile is refused within the key cache time. Once PostgreSQL is back the worker
catches up, every acknowledged reservation and cancel is in the ledger once, the gauge
falls back to 0 and `verify` exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from inventory_cache.apikeys import create_key
from inventory_cache.keys import Keys
from inventory_cache.lag import backlog
from persistence.db import make_engine, migrate
from tests.support.api import CLI, server_env, uvicorn_server
from tests.support.postgres import PrivatePostgres, private_postgres
from tests.support.services import REDIS_URL, need_redis

pytestmark = pytest.mark.slow

OUTAGE_S = float(os.environ.get("INVENTORY_TEST_OUTAGE_S", "15"))
KEY_CACHE_S = 2.0
SKUS = [f"P{i}" for i in range(6)]
SERVED = {200, 201, 409}  # 409: business answers (out of stock)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


async def _until(
    check: Callable[[], Awaitable[bool]], within_s: float, what: str, step_s: float = 0.2
) -> float:
    """Seconds until `check` holds; fails the test after `within_s`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within_s:
            pytest.fail(f"{what}: not within {within_s}s")
        await asyncio.sleep(step_s)
    return time.monotonic() - started


def _metric(text: str, name: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


class Load:
    """Reservations (a third cancelled right after) and availability reads, spread over
    the API processes up now, from every key in `keys`; every answer is recorded."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str], keys: dict[str, str]) -> None:
        self.http, self.urls, self.keys = http, urls, keys
        self.phase = "before"
        self.answers: Counter[tuple[str, str, str, int]] = Counter()  # phase, url, key, status
        self.reserved: set[str] = set()
        self.cancelled: set[str] = set()
        self._orders = itertools.count()
        self.stop = False

    async def _send(self, method: str, url: str, path: str, key: str, body: Any = None) -> int:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        r = await self.http.request(method, url + path, json=body, headers=headers, timeout=30)
        self.answers[(self.phase, url, key, r.status_code)] += 1
        return r.status_code

    async def checkout(self, worker: int) -> None:
        while not self.stop:
            n = next(self._orders)
            url = self.urls[n % len(self.urls)]
            key = ("used", "fresh")[n // 2 % 2] if self.phase == "outage" else "used"
            order = f"o{n}"
            line = {"sku": SKUS[n % len(SKUS)], "qty": 1}
            body = {"order_id": order, "lines": [line]}
            if await self._send("POST", url, "/v1/reservations", key, body) == 201:
                self.reserved.add(order)
                if n % 3 == 0:
                    path = f"/v1/reservations/{order}/cancel"
                    if await self._send("POST", url, path, key) == 200:
                        self.cancelled.add(order)
            await asyncio.sleep(0.01 * worker)

    async def reads(self) -> None:
        for n in itertools.count():
            if self.stop:
                return
            url = self.urls[n % len(self.urls)]
            key = ("used", "fresh")[n // 2 % 2] if self.phase == "outage" else "used"
            await self._send("GET", url, f"/v1/availability/{SKUS[n % len(SKUS)]}", key)
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[str]:
    """`inventory-cache serve` started in a thread, so the load goes on meanwhile."""
    manager = uvicorn_server(env)
    url = await asyncio.to_thread(manager.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@pytest.mark.timeout(900)  # 2-4 minutes on a quiet machine: three server starts, a catch-up
async def test_checkout_goes_on_through_a_postgresql_outage(prefix: str, tmp_path: Path) -> None:
    need_redis()
    with private_postgres() as pg:
        await _outage_scenario(pg, prefix, tmp_path)


async def _outage_scenario(pg: PrivatePostgres, prefix: str, tmp_path: Path) -> None:
    migrate(pg.url)
    env = server_env(
        prefix,
        pg.url,
        INVENTORY_API_KEY_CACHE_SECONDS=str(KEY_CACHE_S),
        INVENTORY_STATUS_REFRESH_SECONDS="0.5",
    )
    db = make_engine(pg.url)
    plain = {
        name: create_key(db, name=name, scopes=scopes)[0]
        for name, scopes in (
            ("used", ["checkout", "read"]),
            ("warehouse", ["warehouse"]),
            ("revokee", ["read"]),
        )
    }
    # warmup marks Redis ready and mirrors the keys above; `keys create` mirrors its own.
    assert _cli(env, "warmup").returncode == 0
    created = _cli(env, "keys", "create", "--scopes", "checkout,read", "--name", "fresh")
    assert created.returncode == 0, created.stderr
    plain["fresh"] = created.stdout.strip()
    (revokee_id,) = [k.id for k in _list(db) if k.name == "revokee"]
    client = redis.Redis.from_url(REDIS_URL)
    keys = Keys(prefix, 16)
    worker = _start_worker(env, tmp_path / "worker.log")
    try:
        async with httpx.AsyncClient() as http, api_process(env) as first:
            for sku in SKUS:
                body = {"ref": "po", "sku": sku, "location": "north", "qty": 100_000}
                headers = {"Authorization": f"Bearer {plain['warehouse']}"}
                r = await http.post(first + "/v1/inbound", json=body, headers=headers)
                assert r.status_code == 200, r.text

            async def get(url: str, path: str, key: str | None = None) -> httpx.Response:
                headers = {"Authorization": f"Bearer {plain[key]}"} if key else {}
                return await http.get(url + path, headers=headers, timeout=30)

            assert (await get(first, "/readyz")).json() == {"status": "ready"}
            assert (await get(first, "/v1/availability/P0", "revokee")).status_code == 200

            urls = [first]
            load = Load(http, urls, plain)
            tasks = [asyncio.create_task(load.checkout(i)) for i in range(3)]
            tasks.append(asyncio.create_task(load.reads()))
            await asyncio.sleep(2)

            # ---------------------------------------------------------------- outage
            pg.stop()
            load.phase = "outage"
            outage_started = time.monotonic()

            async def degraded() -> bool:
                body = (await get(first, "/readyz")).json()
                return bool(body.get("status") == "degraded")

            await _until(degraded, 10, "/readyz degraded")
            ready = await get(first, "/readyz")
            assert ready.status_code == 200 and ready.json()["postgres"] is False
            assert "PostgreSQL" in ready.json()["detail"]
            pg_only = await get(first, "/v1/movements?sku=P0", "used")
            assert pg_only.status_code == 503 and "PostgreSQL" in pg_only.json()["detail"]

            async with api_process(env) as second:  # started while PostgreSQL is down
                urls.append(second)
                assert (await get(second, "/v1/availability/P1", "fresh")).status_code == 200

                revoked = await asyncio.to_thread(_cli, env, "keys", "revoke", revokee_id)
                revoked_at = time.monotonic()
                assert revoked.returncode == 1 and "in Redis" in revoked.stderr, revoked.stderr
                for url in (first, second):

                    async def refused(url: str = url) -> bool:
                        return (await get(url, "/v1/availability/P0", "revokee")).status_code == 401

                    await _until(refused, KEY_CACHE_S + 5, f"revoked key refused by {url}")
                # the cache time, plus a request's time on a busy machine
                assert time.monotonic() - revoked_at <= KEY_CACHE_S + 5

                async def lagging() -> bool:
                    text = (await get(first, "/metrics")).text
                    return _metric(text, "inventory_worker_lag_entries") > 0

                await _until(lagging, 10, "lag gauge above 0")
                rest = OUTAGE_S - (time.monotonic() - outage_started)
                await asyncio.sleep(max(0.0, rest))
                lag_during = _metric(
                    (await get(first, "/metrics")).text, "inventory_worker_lag_entries"
                )
                assert _metric((await get(second, "/metrics")).text, "inventory_postgres_up") == 0

                # ------------------------------------------------------------ back
                pg.start()
                load.phase = "after"
                await asyncio.sleep(2)
                load.stop = True
                await asyncio.gather(*tasks)

            async def caught_up() -> bool:
                return await asyncio.to_thread(backlog, client, keys) == 0

            await _until(caught_up, 120, "worker caught up", step_s=0.5)

            async def lag_zero() -> bool:
                text = (await get(first, "/metrics")).text
                return _metric(text, "inventory_worker_lag_entries") == 0

            await _until(lag_zero, 10, "lag gauge back to 0")
            assert _metric((await get(first, "/metrics")).text, "inventory_postgres_up") == 1

            async def ready_again() -> bool:
                return bool((await get(first, "/readyz")).json() == {"status": "ready"})

            await _until(ready_again, 10, "/readyz ready again")
    finally:
        worker.terminate()
        worker.wait(30)

    by_status: Counter[tuple[str, int]] = Counter()
    for (phase, _url, key, status), n in load.answers.items():
        if key != "revokee":
            by_status[(phase, status)] += n
    assert {status for (_, status) in by_status} <= SERVED, by_status
    outage_served = sum(n for (phase, s), n in by_status.items() if phase == "outage")
    assert outage_served > 10 * OUTAGE_S, by_status
    used = {(url, key) for (phase, url, key, _), _n in load.answers.items() if phase == "outage"}
    assert used == {(u, k) for u in urls for k in ("used", "fresh")}
    assert lag_during > 0

    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT type, ref, count(*) FROM movements GROUP BY type, ref")
        ).all()
        revocation = conn.execute(
            sa.text("SELECT revoked_at FROM api_keys WHERE id = :id"), {"id": revokee_id}
        ).scalar()
    counts = {(t, ref): n for t, ref, n in rows}
    assert {ref for t, ref in counts if t == "reserve"} == load.reserved
    assert {ref for t, ref in counts if t == "cancel"} == load.cancelled
    assert all(n == 1 for (t, _), n in counts.items() if t in ("reserve", "cancel"))
    assert revocation is None  # made while PostgreSQL was down: in the mirror only

    verified = _cli(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _cli(env, "warmup", "--if-empty").returncode == 0  # records the revocation
    assert next(k for k in _list(db) if k.id == revokee_id).revoked_at is not None
    db.dispose()
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen([CLI, "worker"], env=env, stdout=log, stderr=log)


def _list(db: sa.Engine) -> list[Any]:
    from inventory_cache.apikeys import list_keys

    return list_keys(db)
