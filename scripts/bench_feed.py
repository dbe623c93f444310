#!/usr/bin/env python
"""Latency of the live feed: from a reservation sent over HTTP to its SSE message.

Starts `inventory-cache serve` in a subprocess (its own Redis prefix, a scratch
PostgreSQL database), connects `--clients` SSE readers (`GET /v1/events`), then sends
`--n` reservations (`POST /v1/reservations`) at `--rate` per second, one at a time. For
each reservation and each reader it records when the `reserve` message arrived:

- send → event: from just before the POST to the message (what a dashboard lags behind
  the checkout);
- answer → event: from the POST's answer to the message (how much later than the buyer
  the dashboard learns it; negative when the message came first).

Every reader must see every reservation exactly once and in order; the script fails
otherwise.

    .venv/bin/python scripts/bench_feed.py --n 500 --rate 100 --clients 1
    .venv/bin/python scripts/bench_feed.py --n 500 --rate 100 --clients 50

Targets only loopback servers, and cleans up its Redis keys and its scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchlib import (
    drop_database,
    free_port,
    latency_summary,
    recreate_database,
    require_loopback,
)

CLI = str(Path(sys.executable).parent / "inventory-cache")
SKUS = [f"FEED-{i}" for i in range(20)]


async def prepare(args: argparse.Namespace, prefix: str, db_url: str) -> dict[str, str]:
    """Migrate the scratch database, make keys, mark Redis ready, stock the SKUs."""
    import redis.asyncio as aredis

    from inventory_cache.apikeys import create_key
    from inventory_cache.engine import StockEngine
    from inventory_cache.settings import Settings
    from persistence.db import make_engine, migrate

    migrate(db_url)
    db = make_engine(db_url)
    keys = {s: create_key(db, name=s, scopes=[s])[0] for s in ("read", "checkout")}
    db.dispose()
    client = aredis.Redis.from_url(args.redis_url)
    engine = StockEngine(client, Settings(redis_url=args.redis_url, redis_prefix=prefix))
    await engine.mark_ready()
    for sku in SKUS:
        await engine.inbound(ref="bench", sku=sku, location="north", qty=1_000_000)
    await client.aclose()
    return keys


async def drop_prefix(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


def start_server(args: argparse.Namespace, prefix: str, db_url: str, port: int) -> Any:
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": args.redis_url,
        "INVENTORY_REDIS_PREFIX": prefix,
        "INVENTORY_DATABASE_URL": db_url,
        "INVENTORY_LOCATION_PRIORITY": "north",
    }
    proc = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120  # a loaded 2-core machine may take a while to import
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.1)


async def reader(
    client: httpx.AsyncClient,
    read_key: str,
    arrived: dict[str, float],
    order: list[str],
    subscribed: asyncio.Event,
    done: asyncio.Event,
    n: int,
) -> None:
    """One dashboard: records when each reservation's message arrived."""
    headers = {"Authorization": f"Bearer {read_key}"}
    async with client.stream("GET", "/v1/events", headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("id:"):
                subscribed.set()
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            event = orjson.loads(line[5:])
            if event["type"] == "reserve":
                if event["order_id"] in arrived:
                    raise SystemExit(f"{event['order_id']} delivered twice")
                arrived[event["order_id"]] = now
                order.append(event["order_id"])
                if len(order) == n:
                    done.set()


async def run(args: argparse.Namespace, base_url: str, keys: dict[str, str]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        arrivals = [dict[str, float]() for _ in range(args.clients)]
        orders = [list[str]() for _ in range(args.clients)]
        ready = [asyncio.Event() for _ in range(args.clients)]
        done = [asyncio.Event() for _ in range(args.clients)]
        tasks = [
            asyncio.create_task(
                reader(client, keys["read"], arrivals[i], orders[i], ready[i], done[i], args.n)
            )
            for i in range(args.clients)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        checkout = {"Authorization": f"Bearer {keys['checkout']}"}
        interval = 1 / args.rate
        start = time.perf_counter()
        for n in range(args.n):
            await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
            order_id = f"bench-{n}"
            body = {"order_id": order_id, "lines": [{"sku": SKUS[n % len(SKUS)], "qty": 1}]}
            sent[order_id] = time.perf_counter()
            r = await client.post("/v1/reservations", json=body, headers=checkout)
            answered[order_id] = time.perf_counter()
            if r.status_code != 201:
                raise SystemExit(f"reservation refused: {r.status_code} {r.text}")
        with contextlib.suppress(TimeoutError):  # a reader short of messages fails below
            await asyncio.wait_for(asyncio.gather(*(d.wait() for d in done)), 10)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    expected = [f"bench-{n}" for n in range(args.n)]
    for got in orders:
        if got != expected:
            missing = len(set(expected) - set(got))
            raise SystemExit(
                f"a reader saw {len(got)} reservations ({missing} missing) or out of order"
            )
    send_ms = [(a[o] - sent[o]) * 1000 for a in arrivals for o in expected]
    answer_ms = [(a[o] - answered[o]) * 1000 for a in arrivals for o in expected]
    post_ms = [(answered[o] - sent[o]) * 1000 for o in expected]
    return {
        "reservations": args.n,
        "rate_per_s": args.rate,
        "sse_clients": args.clients,
        "send_to_event_ms": latency_summary(send_ms),
        "answer_to_event_ms": latency_summary(answer_ms),
        "post_ms": latency_summary(post_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="reservations to send")
    parser.add_argument("--rate", type=float, default=100.0, help="reservations per second")
    parser.add_argument("--clients", type=int, default=1, help="SSE readers")
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
    args = parser.parse_args()
    require_loopback(args.redis_url)
    require_loopback(args.admin_dsn)
    prefix = "bf" + uuid.uuid4().hex[:8]
    db_name = "bench_feed_" + uuid.uuid4().hex[:8]
    db_url = recreate_database(args.admin_dsn, db_name).replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    proc = None
    try:
        keys = asyncio.run(prepare(args, prefix, db_url))
        port = free_port()
        proc = start_server(args, prefix, db_url, port)
        result = asyncio.run(run(args, f"http://127.0.0.1:{port}", keys))
        print(json.dumps(result, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(drop_prefix(args.redis_url, prefix))
        drop_database(args.admin_dsn, db_name)


if __name__ == "__main__":
    main()
