#!/usr/bin/env python
"""Write-behind throughput and lag: Redis event streams into PostgreSQL by the worker.

    .venv/bin/python scripts/bench_writebehind.py [--events 60000] [--rate 2000]

1. Throughput: fills the streams with `--events` events through the real Lua scripts
   (inbound movements and reservations over `--skus` SKUs, all slot groups), then starts
   `--workers` worker processes (`inventory-cache worker`) and measures how fast they
   flush: events committed per second, from the first commit to the last (process start
   excluded), read from the ledger's own `recorded_at`. A worker reads about one batch
   at a time, so the reads and parsing of every batch but the first are in the figure.
   Each worker count in `--workers` (default 1 and 2) gets its own fresh streams and
   database and its own row.
2. Lag: offers `--rate` events per second for `--duration` seconds (open loop: a
   scheduled send is never skipped or delayed by a slow one) with the worker running, and
   reports the lag of each event from its stream entry (the entry id's time: when Redis
   accepted the change) to its ledger row (`recorded_at`, PostgreSQL's statement time,
   just before the COMMIT), p50/p99/max. The entry time, not the event's `created_at`, so
   that a producer falling behind its schedule does not count as worker lag.

Loopback only. Uses its own Redis prefix and a scratch database beside `--database-url`,
both removed afterwards. Prints a Markdown table and, with `--json`, writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from benchlib import (
    drop_database,
    markdown_table,
    process_cpu_seconds,
    recreate_database,
    require_loopback,
)

from inventory_cache.engine import StockEngine
from inventory_cache.lag import backlog
from inventory_cache.models import LineRequest
from inventory_cache.settings import Settings
from persistence.db import make_engine, migrate

BIN = Path(sys.executable).parent


async def _op(eng: StockEngine, rng: random.Random, i: int, skus: int) -> None:
    """One event: an inbound (60%) or a one-line reservation (40%)."""
    sku = f"B{rng.randrange(skus)}"
    if rng.random() < 0.6:
        await eng.inbound(ref=f"in{i}", sku=sku, location="north", qty=5)
    else:
        await eng.reserve(order_id=f"o{i}", lines=[LineRequest(sku, 1, "north")])


async def fill(eng: StockEngine, events: int, skus: int) -> float:
    rng = random.Random(1)
    for j in range(skus):
        await eng.inbound(ref=f"seed{j}", sku=f"B{j}", location="north", qty=1_000_000)
    started = time.monotonic()
    for i in range(skus, events, 256):
        await asyncio.gather(*(_op(eng, rng, k, skus) for k in range(i, min(i + 256, events))))
    return events / (time.monotonic() - started)


async def offer(eng: StockEngine, rate: float, duration: float, skus: int, start: int) -> int:
    """Open loop: every 10 ms, send what the schedule says is due, without waiting."""
    rng = random.Random(2)
    sent, began = 0, time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    while (elapsed := time.monotonic() - began) < duration:
        due = int(elapsed * rate) - sent
        for _ in range(due):
            t = asyncio.create_task(_op(eng, rng, start + sent, skus))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    return sent


def start_workers(n: int, env: dict[str, str], batch: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                str(BIN / "inventory-cache"),
                "worker",
                "--consumer",
                f"bench-{k}",
                "--batch-size",
                str(batch),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(n)
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)


def wait_backlog_below(
    client: Any, settings: Settings, bound: int, limit: float, poll: float, failed: str
) -> int:
    """Wait until fewer than `bound` entries are left to flush; how many are."""
    from inventory_cache.keys import Keys

    keys = Keys(settings.redis_prefix, settings.slot_groups)
    deadline = time.monotonic() + limit
    while (left := backlog(client, keys)) >= bound and time.monotonic() < deadline:
        time.sleep(poll)
    if left >= bound:
        raise SystemExit(f"the worker did not {failed} within {limit:.0f} s")
    return left


def wait_drained(client: Any, settings: Settings, limit: float) -> None:
    wait_backlog_below(client, settings, 1, limit, 0.1, "catch up")


def wait_flushing(client: Any, settings: Settings, events: int, limit: float) -> int:
    """Wait for the workers' first commit; the entries then left to flush."""
    return max(wait_backlog_below(client, settings, events, limit, 0.01, "commit"), 1)


def query(url: str, sql: str) -> Any:
    import sqlalchemy as sa

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).one()
    finally:
        engine.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = "bwb" + uuid.uuid4().hex[:8]
    name = "bench_wb_" + uuid.uuid4().hex[:8]
    url = recreate_database(args.database_url, name).replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    settings = Settings(redis_url=args.redis_url, redis_prefix=prefix, slot_groups=args.groups)
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": args.redis_url,
        "INVENTORY_REDIS_PREFIX": prefix,
        "INVENTORY_SLOT_GROUPS": str(args.groups),
        "INVENTORY_DATABASE_URL": url,
    }
    client: Any = redis.Redis.from_url(args.redis_url)  # redis-py: replies `Awaitable[T] | T`
    aclient = aredis.Redis.from_url(args.redis_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        migrate(url)
        eng = StockEngine(aclient, settings)
        await eng.mark_ready()
        fill_rate = await fill(eng, args.events, args.skus)
        print(f"filled {args.events} events at {fill_rate:.0f} ops/s", file=sys.stderr)
        procs = start_workers(args.workers, env, args.batch_size)
        # The workers' CPU from their first commit on (start-up excluded): what an event
        # costs them, which a loaded machine moves far less than the rate.
        left = wait_flushing(client, settings, args.events, 120)
        cpu0 = sum(process_cpu_seconds(p.pid) for p in procs)
        wait_drained(client, settings, 600)
        cpu_per_event = (sum(process_cpu_seconds(p.pid) for p in procs) - cpu0) / left
        print("flushed; offering the steady load", file=sys.stderr)
        n, span = query(
            url,
            "SELECT count(*), extract(epoch FROM max(recorded_at) - min(recorded_at))"
            " FROM movements",
        )
        flushed = n / max(float(span), 1e-3)
        sent = await offer(eng, args.rate, args.duration, args.skus, args.events)
        wait_drained(client, settings, 120)
        lag = query(
            url,
            "SELECT count(*),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)"
            " FROM (SELECT extract(epoch FROM recorded_at) - split_part(stream_id, '-', 1)::bigint"
            "       / 1000.0 AS lag"
            f"       FROM movements ORDER BY id OFFSET {n}) t",
        )
        stop(procs)
        return {
            "events": args.events,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "slot_groups": args.groups,
            "fill_ops_per_s": round(fill_rate),
            "flushed_events_per_s": round(flushed),
            "worker_cpu_us_per_event": round(cpu_per_event * 1e6, 1),
            "offered_events_per_s": round(sent / args.duration),
            "lag_rows": int(lag[0]),
            "lag_p50_ms": round(float(lag[1]) * 1000, 1),
            "lag_p99_ms": round(float(lag[2]) * 1000, 1),
            "lag_max_ms": round(float(lag[3]) * 1000, 1),
            "load_average": round(os.getloadavg()[0], 1),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()
        await aclient.aclose()
        drop_database(args.database_url, name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an existing database; the scratch database is created beside it",
    )
    p.add_argument("--events", type=int, default=60_000, help="events to flush (phase 1)")
    p.add_argument("--skus", type=int, default=2_000)
    p.add_argument("--groups", type=int, default=256, help="slot groups (streams)")
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="worker counts to measure, one row each (each on fresh streams and database)",
    )
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--rate", type=float, default=2000.0, help="offered events/s (phase 2)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of phase 2")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    require_loopback(args.redis_url)
    require_loopback(args.database_url)
    results = []
    for n in args.workers:
        results.append(asyncio.run(run(argparse.Namespace(**{**vars(args), "workers": n}))))
        print(f"{n} worker(s): {results[-1]['flushed_events_per_s']} events/s", file=sys.stderr)
    print(
        markdown_table(
            [
                "flushed events/s",
                "worker CPU µs/event",
                "offered events/s",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "workers",
                "batch",
                "load avg",
            ],
            [
                [
                    result["flushed_events_per_s"],
                    result["worker_cpu_us_per_event"],
                    result["offered_events_per_s"],
                    result["lag_p50_ms"],
                    result["lag_p99_ms"],
                    result["lag_max_ms"],
                    result["workers"],
                    result["batch_size"],
                    result["load_average"],
                ]
                for result in results
            ],
        )
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
