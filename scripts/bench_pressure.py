#!/usr/bin/env python
"""Does one kind of heavy client hurt everyone else? `/healthz` and checkout under pressure.

Starts `inventory-cache serve` in a subprocess (its own Redis prefix, a scratch PostgreSQL
database) and runs two probes throughout, in a process of their own: `GET /healthz` every
10 ms, and one-line checkouts (`POST /v1/reservations`, then cancel) at `--probe-rate` per
second. First for `--idle-seconds` with nothing else going on, then for `--seconds` under
the chosen pressure:

- `feed-resume`: the event streams are first filled with `--entries` entries; then
  `--clients` readers resume `GET /v1/events` from the very start (`Last-Event-ID:
  0-0-0`) and read as fast as they can, reconnecting from the start when they reach the
  live end;
- `large-orders`: `--clients` clients each send 100-line orders (`POST /v1/reservations`,
  then cancel it) back to back, under their own API key.

It prints JSON: for each phase the `/healthz` and one-line checkout latency (p50/p99/max),
and the API process's resident memory at the start and end of the pressure phase; the
targets of the row are `/healthz` p99 < 50 ms, checkout p99 < 3x idle, memory growth < 100 MB.

    .venv/bin/python scripts/bench_pressure.py --scenario feed-resume --entries 100000 --clients 20
    .venv/bin/python scripts/bench_pressure.py --scenario large-orders --clients 20

Targets only loopback servers, and cleans up its Redis keys and its scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import subprocess
import time
import uuid
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from bench_feed import drop_prefix, start_server
from benchlib import (
    drop_database,
    free_port,
    latency_summary,
    recreate_database,
    require_loopback,
)

LINES = 100
PROBE_SKU = "PROBE-1"
BIG_SKUS = [f"BIG-{i}" for i in range(LINES)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def prepare(args: argparse.Namespace, prefix: str, db_url: str) -> dict[str, Any]:
    """Migrate, make keys (one checkout key per pressure client), stock, fill the streams."""
    import redis.asyncio as aredis

    from inventory_cache.apikeys import create_key
    from inventory_cache.engine import StockEngine
    from inventory_cache.settings import Settings
    from persistence.db import make_engine, migrate

    migrate(db_url)
    db = make_engine(db_url)
    keys: dict[str, Any] = {s: create_key(db, name=s, scopes=[s])[0] for s in ("read", "checkout")}
    keys["clients"] = [
        create_key(db, name=f"client-{i}", scopes=["checkout", "read"])[0]
        for i in range(args.clients)
    ]
    db.dispose()
    client = aredis.Redis.from_url(args.redis_url)
    engine = StockEngine(client, Settings(redis_url=args.redis_url, redis_prefix=prefix))
    await engine.mark_ready()
    for sku in [PROBE_SKU, *BIG_SKUS]:
        await engine.inbound(ref="bench", sku=sku, location="north", qty=1_000_000)
    if args.scenario == "feed-resume":
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                sku = BIG_SKUS[i % LINES]
                await engine.inbound(ref=f"fill-{i}", sku=sku, location="north", qty=1)

        await asyncio.gather(*(one(i) for i in range(args.entries)))
    await client.aclose()
    return keys


async def probe_health(client: httpx.AsyncClient, stop: asyncio.Event, out: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        r = await client.get("/healthz")
        out.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        await asyncio.sleep(0.01)


async def probe_checkout(
    client: httpx.AsyncClient, key: str, rate: float, stop: asyncio.Event, out: list[float]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    n = 0
    while not stop.is_set():
        order_id = f"probe-{uuid.uuid4().hex[:12]}"
        body = {"order_id": order_id, "lines": [{"sku": PROBE_SKU, "qty": 1}]}
        t = time.perf_counter()
        r = await client.post("/v1/reservations", json=body, headers=headers)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 201:
            raise SystemExit(f"probe checkout refused: {r.status_code} {r.text}")
        await client.post(f"/v1/reservations/{order_id}/cancel", headers=headers)
        n += 1
        await asyncio.sleep(1 / rate)


async def resume_reader(
    client: httpx.AsyncClient, key: str, stop: asyncio.Event, seen: Counter[str]
) -> None:
    """Resume from the very start, read everything, and again, until stopped."""
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": "0-0-0"}
    while not stop.is_set():
        async with client.stream("GET", "/v1/events", headers=headers) as r:
            if r.status_code != 200:
                seen[f"http {r.status_code}"] += 1
                await asyncio.sleep(1)
                continue
            quiet = 0
            async for line in r.aiter_lines():
                if stop.is_set():
                    return
                if line.startswith("data:"):
                    seen["events"] += 1
                    quiet = 0
                elif line.startswith(":"):
                    quiet += 1  # a keep-alive: the live end is reached
                    if quiet > 1:
                        break


async def large_orders(
    client: httpx.AsyncClient, key: str, stop: asyncio.Event, seen: Counter[str]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    lines = [{"sku": sku, "qty": 1} for sku in BIG_SKUS]
    while not stop.is_set():
        order_id = f"big-{uuid.uuid4().hex[:12]}"
        r = await client.post(
            "/v1/reservations", json={"order_id": order_id, "lines": lines}, headers=headers
        )
        seen[f"http {r.status_code}"] += 1
        if r.status_code == 201:
            await client.post(f"/v1/reservations/{order_id}/cancel", headers=headers)
        elif r.status_code == 429:
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))


def probe_process(base_url: str, key: str, rate: float, seconds: float, conn: Connection) -> None:
    """The probes in a process of their own, as the other shoppers are: sharing the load
    generator's event loop, they waited for its 100-line bodies to be encoded and its
    answers parsed, and that wait was counted as the server's."""

    async def probes() -> tuple[list[float], list[float]]:
        stop = asyncio.Event()
        health: list[float] = []
        checkout: list[float] = []
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            await client.get("/healthz")
            conn.send("ready")
            tasks = [
                asyncio.create_task(probe_health(client, stop, health)),
                asyncio.create_task(probe_checkout(client, key, rate, stop, checkout)),
            ]
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.gather(*tasks)
        return health, checkout

    conn.send(asyncio.run(probes()))


async def phase(
    args: argparse.Namespace,
    client: httpx.AsyncClient,
    keys: dict[str, Any],
    seconds: float,
    pressure: bool,
    pid: int,
) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    prober = spawn.Process(
        target=probe_process,
        args=(str(client.base_url), keys["checkout"], args.probe_rate, seconds, theirs),
    )
    prober.start()
    theirs.close()  # so that a probe process that dies is an EOFError here, not a hang
    try:
        if await asyncio.to_thread(ours.recv) != "ready":
            raise SystemExit("the probe process did not start")
        stop = asyncio.Event()
        seen: Counter[str] = Counter()
        tasks = []
        if pressure:
            load = resume_reader if args.scenario == "feed-resume" else large_orders
            tasks = [asyncio.create_task(load(client, k, stop, seen)) for k in keys["clients"]]
        rss_start = rss_mb(pid)
        await asyncio.sleep(seconds)
        rss_end = rss_mb(pid)
        stop.set()
        health, checkout = await asyncio.to_thread(ours.recv)
        done, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        prober.join(30)
        if prober.is_alive():
            prober.kill()
    if prober.exitcode:
        raise SystemExit(f"the probe process failed (exit {prober.exitcode})")
    return {
        "healthz_ms": latency_summary(health),
        "checkout_ms": latency_summary(checkout),
        "api_rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1)},
        "pressure": dict(seen),
    }


async def run(
    args: argparse.Namespace, base_url: str, keys: dict[str, Any], pid: int
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients + 20)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        idle = await phase(args, client, keys, args.idle_seconds, False, pid)
        busy = await phase(args, client, keys, args.seconds, True, pid)
    growth = busy["api_rss_mb"]["end"] - idle["api_rss_mb"]["start"]
    return {
        "scenario": args.scenario,
        "clients": args.clients,
        "entries": args.entries if args.scenario == "feed-resume" else None,
        "idle": idle,
        "under_pressure": busy,
        "targets": {
            "healthz_p99_under_50ms": busy["healthz_ms"]["p99"] < 50,
            "checkout_p99_under_3x_idle": busy["checkout_ms"]["p99"]
            < 3 * idle["checkout_ms"]["p99"],
            "api_memory_growth_under_100mb": growth < 100,
        },
        "api_memory_growth_mb": round(growth, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--scenario", choices=["feed-resume", "large-orders"], required=True)
    parser.add_argument("--clients", type=int, default=20, help="heavy clients")
    parser.add_argument("--entries", type=int, default=100_000, help="feed-resume: stream entries")
    parser.add_argument("--seconds", type=float, default=15.0, help="pressure phase")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle phase")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe checkouts per s")
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
    require_loopback(args.redis_url)
    require_loopback(args.admin_dsn)
    prefix = "bp" + uuid.uuid4().hex[:8]
    db_name = "bench_pressure_" + uuid.uuid4().hex[:8]
    db_url = recreate_database(args.admin_dsn, db_name).replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    proc = None
    try:
        keys = asyncio.run(prepare(args, prefix, db_url))
        port = free_port()
        proc = start_server(args, prefix, db_url, port)
        result = asyncio.run(run(args, f"http://127.0.0.1:{port}", keys, proc.pid))
        print(json.dumps(result, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        asyncio.run(drop_prefix(args.redis_url, prefix))
        drop_database(args.admin_dsn, db_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
