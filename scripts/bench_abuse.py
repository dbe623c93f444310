#!/usr/bin/env python
"""What an abusive client costs everyone else: `/healthz` and one-line checkout latency
during each attack, against idle.

Starts `inventory-cache serve` in a subprocess (its own Redis prefix, a scratch
PostgreSQL database). For each phase it runs the attack, waits `--settle` seconds, then
for `--seconds` a probe sends, one after another, `GET /healthz` and a one-line
`POST /v1/reservations`, and records their latencies. Phases:

- `idle`: no attack;
- `big_headers`: `--big-header-clients` connections, each sending requests with one
  `--big-header-mb` MB header, again and again (expected: 431 `header_too_large` early);
- `stalled_headers`: `--stalled-headers` connections that send part of a request's
  headers and then nothing (expected: closed after INVENTORY_HEADER_TIMEOUT_SECONDS);
- `stalled_bodies`: `--stalled-bodies` connections that send headers and part of a
  body, then nothing (expected: closed after INVENTORY_BODY_TIMEOUT_SECONDS);
- `scrape_flood`: `--scrape-clients` clients asking `/metrics` and `/readyz` (no key)
  in a loop (expected: cheap, both answered from the background status);
- `ping_flood`: the same clients asking `/v1/ping` in a loop: what any flood of the
  cheapest request costs, the yardstick of `scrape_flood`;
- `feed_flood`: `--feed-clients` clients opening the live feed (`GET /v1/events`) with
  `--feed-keys` read keys in turn and holding it; one refused asks again after 0.5 s
  (expected: 429 past INVENTORY_FEED_MAX_CLIENTS and the per-key limit, and the API's
  Redis connections bounded during the attack and back after it). The answer adds
  Redis's `connected_clients` before, during and after the attack.

An attacking connection the server closes is opened again, so the pressure stays. The
answer is JSON: per phase, the probe's p50/p95/p99 in ms, the answers the big-header
attack received, and how often the server closed a stalled connection.

    .venv/bin/python scripts/bench_abuse.py --seconds 20
    .venv/bin/python scripts/bench_abuse.py --stalled-headers 5000 --stalled-bodies 1000

Targets only loopback servers, and cleans up its Redis keys and its scratch database. It
raises its own open-file limit to the hard limit for the stalled connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
from benchlib import (
    drop_database,
    free_port,
    latency_summary,
    recreate_database,
    require_loopback,
)

CLI = str(Path(sys.executable).parent / "inventory-cache")
SKU = "ABUSE-1"
PHASES = (
    "idle",
    "big_headers",
    "stalled_headers",
    "stalled_bodies",
    "scrape_flood",
    "ping_flood",
    "feed_flood",
)


async def prepare(
    redis_url: str, prefix: str, db_url: str, feed_keys: int
) -> tuple[str, list[str]]:
    """Migrate the scratch database, make a checkout key and `feed_keys` read keys, mark
    Redis ready, stock the SKU."""
    import redis.asyncio as aredis

    from inventory_cache.apikeys import create_key
    from inventory_cache.engine import StockEngine
    from inventory_cache.settings import Settings
    from persistence.db import make_engine, migrate

    migrate(db_url)
    db = make_engine(db_url)
    key = create_key(db, name="bench", scopes=["checkout"])[0]
    readers = [create_key(db, name=f"feed-{i}", scopes=["read"])[0] for i in range(feed_keys)]
    db.dispose()
    client = aredis.Redis.from_url(redis_url)
    engine = StockEngine(client, Settings(redis_url=redis_url, redis_prefix=prefix))
    await engine.mark_ready()
    await engine.inbound(ref="bench", sku=SKU, location="north", qty=1_000_000)
    await client.aclose()
    return key, readers


async def drop_prefix(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


def start_server(redis_url: str, prefix: str, db_url: str, port: int, log: Any) -> Any:
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": redis_url,
        "INVENTORY_REDIS_PREFIX": prefix,
        "INVENTORY_DATABASE_URL": db_url,
        "INVENTORY_LOCATION_PRIORITY": "north",
    }
    proc = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 300  # a loaded 2-core machine takes a while to import
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"the server did not start (exit {proc.returncode}):\n{tail}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------- attacks
Attack = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Attacks:
    def __init__(self, port: int, args: argparse.Namespace, feed_keys: list[str]) -> None:
        self.port = port
        self.args = args
        self.feed_keys = feed_keys
        self.feeds_started = 0
        self.answers: Counter[str] = Counter()  # big-header answers by status line
        self.closed = 0  # stalled connections the server closed

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def big_headers(self, stop: asyncio.Event) -> None:
        chunk = b"a" * 65536
        size = int(self.args.big_header_mb * 1024 * 1024)
        while not stop.is_set():
            reader, writer = await self._open()
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(0, size, len(chunk)):
                    writer.write(chunk)
                    await writer.drain()
                writer.write(b"\r\n\r\n")
                await writer.drain()
            except OSError:
                pass  # the server stopped reading: its answer is waiting
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
            except (OSError, TimeoutError):
                line = b""
            self.answers[line.decode(errors="replace").strip() or "closed, no answer"] += 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _stalled(self, stop: asyncio.Event, first: bytes) -> None:
        while not stop.is_set():
            try:
                reader, writer = await self._open()
            except OSError:
                await asyncio.sleep(0.5)  # out of descriptors or ports: try again later
                continue
            try:
                writer.write(first)
                await writer.drain()
                read = asyncio.ensure_future(reader.read())
                halt = asyncio.ensure_future(stop.wait())
                await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    self.closed += 1
                for task in (read, halt):
                    task.cancel()
            except OSError:
                self.closed += 1
            finally:
                writer.close()

    async def stalled_headers(self, stop: asyncio.Event) -> None:
        await self._stalled(stop, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")

    async def stalled_bodies(self, stop: asyncio.Event) -> None:
        head = (
            b"POST /v1/inbound HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        await self._stalled(stop, head + b'{"ref": ')

    async def scrape_flood(self, stop: asyncio.Event) -> None:
        """`/metrics` and `/readyz` (no key needed) in a loop: each must cost a few Redis
        calls at most, answered from the figures the API refreshes in the background."""
        await self._loop(stop, ("/metrics", "/readyz"))

    async def ping_flood(self, stop: asyncio.Event) -> None:
        await self._loop(stop, ("/v1/ping",))

    async def _loop(self, stop: asyncio.Event, paths: tuple[str, ...]) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            while not stop.is_set():
                for path in paths:
                    with contextlib.suppress(httpx.TransportError):
                        answer = await client.get(path, timeout=30)
                        self.answers[f"{path} {answer.status_code}"] += 1

    async def feed_flood(self, stop: asyncio.Event) -> None:
        """One live feed held open; refused (429), asked again after 0.5 s."""
        key = self.feed_keys[self.feeds_started % len(self.feed_keys)]
        self.feeds_started += 1
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            while not stop.is_set():
                try:
                    async with client.stream("GET", "/v1/events", headers=headers) as r:
                        self.answers[f"feed {r.status_code}"] += 1
                        if r.status_code == 200:
                            halt = asyncio.ensure_future(stop.wait())
                            read = asyncio.ensure_future(_drain(r))
                            await asyncio.wait({halt, read}, return_when=asyncio.FIRST_COMPLETED)
                            for task in (halt, read):
                                task.cancel()
                            continue
                except httpx.HTTPError as exc:
                    self.answers[f"feed {type(exc).__name__}"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)

    def of(self, phase: str) -> tuple[Attack | None, int]:
        a = self.args
        return {
            "idle": (None, 0),
            "big_headers": (self.big_headers, a.big_header_clients),
            "stalled_headers": (self.stalled_headers, a.stalled_headers),
            "stalled_bodies": (self.stalled_bodies, a.stalled_bodies),
            "scrape_flood": (self.scrape_flood, a.scrape_clients),
            "ping_flood": (self.ping_flood, a.scrape_clients),
            "feed_flood": (self.feed_flood, a.feed_clients),
        }[phase]


async def _drain(response: httpx.Response) -> None:
    async for _ in response.aiter_raw():
        pass


async def redis_clients(redis_url: str) -> int:
    """Redis's `connected_clients` (this script's own connection included)."""
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    try:
        return int((await client.info("clients"))["connected_clients"])
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------- probe
async def probe(base_url: str, key: str, seconds: float, phase: str) -> dict[str, Any]:
    health_ms: list[float] = []
    checkout_ms: list[float] = []
    failures: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            h = await client.get("/healthz")
            t1 = time.perf_counter()
            body = {"order_id": f"{phase}-{n}", "lines": [{"sku": SKU, "qty": 1}]}
            r = await client.post("/v1/reservations", json=body, headers=headers)
            t2 = time.perf_counter()
            n += 1
            health_ms.append((t1 - t0) * 1000)
            checkout_ms.append((t2 - t1) * 1000)
            if h.status_code != 200:
                failures[f"healthz {h.status_code}"] += 1
            if r.status_code != 201:
                failures[f"checkout {r.status_code}"] += 1
    return {
        "probes": n,
        "healthz_ms": latency_summary(health_ms),
        "checkout_ms": latency_summary(checkout_ms),
        "probe_failures": dict(failures),
    }


async def run(
    args: argparse.Namespace, port: int, key: str, feed_keys: list[str]
) -> dict[str, Any]:
    attacks = Attacks(port, args, feed_keys)
    out: dict[str, Any] = {}
    for phase in args.phases:
        attack, clients = attacks.of(phase)
        connected_before = await redis_clients(args.redis_url)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(attack(stop)) for _ in range(clients)] if attack else []
        attacks.answers.clear()
        attacks.closed = 0
        await asyncio.sleep(args.settle if tasks else 0)
        result = await probe(f"http://127.0.0.1:{port}", key, args.seconds, phase)
        connected_during = await redis_clients(args.redis_url)
        stop.set()
        await asyncio.wait(tasks, timeout=max(args.settle, 5)) if tasks else None
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        result["attack_connections"] = clients
        if phase == "big_headers":
            result["big_header_answers"] = dict(attacks.answers)
        if phase in ("scrape_flood", "ping_flood"):
            result["flood_answers"] = dict(attacks.answers)
        if phase == "feed_flood":
            result["feed_answers"] = dict(attacks.answers)
            await asyncio.sleep(args.settle)
            result["redis_connected_clients"] = {
                "before": connected_before,
                "during": connected_during,
                "after": await redis_clients(args.redis_url),
            }
        if phase.startswith("stalled"):
            result["closed_by_server"] = attacks.closed
        out[phase] = result
    return out


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="probe time per phase")
    parser.add_argument("--settle", type=float, default=5.0, help="attack time before probing")
    parser.add_argument("--big-header-clients", type=int, default=8)
    parser.add_argument("--big-header-mb", type=float, default=20.0)
    parser.add_argument("--stalled-headers", type=int, default=5000)
    parser.add_argument("--stalled-bodies", type=int, default=1000)
    parser.add_argument("--scrape-clients", type=int, default=20)
    parser.add_argument("--feed-clients", type=int, default=1000)
    parser.add_argument("--feed-keys", type=int, default=50, help="read keys the feeds share")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated, of " + ", ".join(PHASES)
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("INVENTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument(
        "--admin-dsn",
        default=os.environ.get(
            "INVENTORY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL database to create the scratch database from",
    )
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    require_loopback(args.redis_url)
    require_loopback(args.admin_dsn)
    raise_open_files_limit()
    prefix = "ba" + uuid.uuid4().hex[:8]
    db_name = "bench_abuse_" + uuid.uuid4().hex[:8]
    db_url = recreate_database(args.admin_dsn, db_name).replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    proc = None
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the server's output, until it stops)
    try:
        key, feed_keys = asyncio.run(prepare(args.redis_url, prefix, db_url, args.feed_keys))
        port = free_port()
        proc = start_server(args.redis_url, prefix, db_url, port, log)
        result = asyncio.run(run(args, port, key, feed_keys))
        print(json.dumps(result, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        asyncio.run(drop_prefix(args.redis_url, prefix))
        drop_database(args.admin_dsn, db_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
