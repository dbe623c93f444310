"""The HTTP API under test: the app on real Redis and PostgreSQL, one key per scope, and
a real uvicorn server in a subprocess. A fixture plugin (conftest's `pytest_plugins`):
`api_database` and `api` need no import.

Each test gets its own Redis key prefix (tests/support/backends.py); each test module its
own migrated PostgreSQL database (tests/support/postgres.py), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from inventory_cache.api.main import create_app
from inventory_cache.apikeys import SCOPES, create_key
from inventory_cache.engine import Clock, StockEngine, wall_clock_ms
from persistence.db import make_engine
from persistence.models import LedgerMark
from tests.support.ports import free_port
from tests.support.postgres import fresh_database
from tests.support.services import REDIS_URL, make_settings

CLI = str(Path(sys.executable).parent / "inventory-cache")


@dataclass
class Api:
    app: Any
    client: httpx.AsyncClient
    engine: StockEngine
    db: Engine
    keys: dict[str, str]

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@dataclass
class Database:
    url: str
    engine: Engine
    keys: dict[str, str]  # one key per scope, each holding only that scope


@pytest.fixture(scope="module")
def api_database() -> Iterator[Database]:
    with fresh_database() as url:
        db = make_engine(url)
        keys = {scope: create_key(db, name=scope, scopes=[scope])[0] for scope in SCOPES}
        yield Database(url, db, keys)
        db.dispose()


async def start_api(
    client: Any, prefix: str, database: Database, *, clock: Clock | None = None, **settings: Any
) -> tuple[Any, StockEngine]:
    """An app on its own prefix, every slot group marked ready (as after warmup); its engine
    reads `clock` when given (tests that move time by hand).

    The module's database outlives each test's Redis prefix: the ledger marks earlier tests'
    workers committed name stream entries this prefix never had, and would mark its groups
    behind the ledger. A new prefix is a new deployment: it starts with none.
    """
    with database.engine.begin() as conn:
        conn.execute(sa.delete(LedgerMark))
    cfg = make_settings(prefix, **settings)
    engine = StockEngine(client, cfg, clock=clock or wall_clock_ms)
    await engine.mark_ready()
    return create_app(cfg, engine=engine, database=database.engine), engine


@asynccontextmanager
async def serving(
    client: Any, prefix: str, database: Database, *, clock: Clock | None = None, **settings: Any
) -> AsyncIterator[Api]:
    """`start_api`, its lifespan running, and an HTTP client talking to it in process."""
    app, engine = await start_api(client, prefix, database, clock=clock, **settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield Api(app, http, engine, database.engine, database.keys)


@pytest.fixture
async def api(real_redis: Any, prefix: str, api_database: Database) -> AsyncIterator[Api]:
    async with serving(real_redis, prefix, api_database) as served:
        yield served


PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is problem+json of this status and code; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body.keys() >= PROBLEM_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:inventory-cache:problem:{code}"
    return body


def server_env(prefix: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": REDIS_URL,
        "INVENTORY_REDIS_PREFIX": prefix,
        "INVENTORY_SLOT_GROUPS": "16",
        "INVENTORY_DATABASE_URL": database_url,
        "INVENTORY_LOCATION_PRIORITY": "north,south",
    }
    env.update(extra)
    return env


@contextmanager
def uvicorn_server(env: dict[str, str], *args: str, start_s: float = 240) -> Iterator[str]:
    """`inventory-cache serve` on a free loopback port; yields its base URL once it answers
    (within `start_s`: on 2 busy cores, with the suite's parallel workers, importing the
    app in two worker processes has taken over a minute). Its log goes to a file, so a
    chatty server can never block on a full pipe."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, proc, start_s)
            yield url
        except BaseException:
            proc.terminate()
            proc.wait(10)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"uvicorn exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"uvicorn did not answer within {timeout_s}s")
        time.sleep(0.1)


def checkout_burst(
    url: str, key: str, sku: str, orders: list[str], start_at: float
) -> Counter[str]:
    """Runs in a separate OS process: every order at once, each on its own connection,
    starting at the wall-clock `start_at` so that the processes overlap. Returns a count
    of "status code". A bare HTTP/1.1 client: on two cores, a heavy one (httpx) would
    take the CPU the server needs."""
    return asyncio.run(_burst(url, key, sku, orders, start_at))


async def _burst(url: str, key: str, sku: str, orders: list[str], start_at: float) -> Counter[str]:
    host, _, port = url.removeprefix("http://").partition(":")
    await asyncio.sleep(max(0.0, start_at - time.time()))
    return Counter(await asyncio.gather(*(_checkout(host, int(port), key, sku, o) for o in orders)))


async def _checkout(host: str, port: int, key: str, sku: str, order_id: str) -> str:
    body = orjson.dumps({"order_id": order_id, "lines": [{"sku": sku, "qty": 1}]})
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/reservations HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (host.encode(), key.encode(), len(body), body)
    )
    await writer.drain()
    raw = await reader.read()  # the server closes after its answer
    writer.close()
    await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    code = orjson.loads(payload).get("code", "") if status >= 400 else ""
    return f"{status} {code}".strip()


async def order_keys(api: Api, order_id: str) -> list[bytes]:
    prefix = api.engine.keys.prefix
    return [k async for k in api.engine.client.scan_iter(match=f"{prefix}:*{order_id}*")]


async def let_the_window_pass(api: Api, order_id: str) -> None:
    """Each key holds a TTL within the window; expire them now instead of waiting a day.

    A window lasts a minute at least, and the API's archive reads what the worker
    committed every second: that read is made here, as a window would have allowed it."""
    archive = api.engine.archive
    if archive is not None and archive.filter is not None:
        await archive.filter.refresh()
    window_ms = api.engine.settings.finished_retention_seconds * 1000
    keys = await order_keys(api, order_id)
    assert keys
    for key in keys:
        ttl = await api.engine.client.pttl(key)
        assert 0 < ttl <= window_ms + api.engine.settings.reservation_ttl_seconds * 1000, key
        await api.engine.client.pexpire(key, 1)
    for _ in range(100):
        if not await order_keys(api, order_id):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"keys of {order_id} still in Redis")
