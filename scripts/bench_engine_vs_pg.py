#!/usr/bin/env python
"""Reservations/s through StockEngine (Redis + Lua) vs the PostgreSQL baseline, no HTTP.

Both sides run in the same number of OS processes with the same number of concurrent
asyncio tasks per process, each task reserving one unit per order in a closed loop, for
the same time, in alternating rounds of one run (medians reported): a hot SKU (every
buyer wants the same item, the flash-sale case) and SKUs spread uniformly over a
catalogue. The baseline runs twice: as users get it (synchronous_commit on) and at the
durability the service itself offers (Redis AOF everysec acknowledges before the disk,
as synchronous_commit off does).

    .venv/bin/python scripts/bench_engine_vs_pg.py --processes 2 --concurrency 16 \\
        --duration 3 --rounds 3

Every figure is successful reservations per second; ratios are ours / baseline.
Targets only loopback servers, and cleans up its Redis keys and its scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg
from benchlib import (
    drop_database,
    latency_summary,
    markdown_table,
    recreate_database,
    require_loopback,
)

HOT_SKU = "HOT-1"
LOCATION = "north"
SIDES = ("engine", "pg", "pg-async-commit")


@dataclass(frozen=True)
class Job:
    side: str
    scenario: str  # "hot" or "spread"
    redis_url: str
    prefix: str
    dsn: str
    skus: int
    concurrency: int
    warmup: float
    duration: float
    pg_pool: int
    proc: int
    run: str


def _sku(job: Job, rng: random.Random) -> str:
    return HOT_SKU if job.scenario == "hot" else f"S{rng.randrange(job.skus)}"


async def _open(job: Job) -> tuple[Any, Any]:
    """The engine for this side, and how to close it."""
    if job.side == "engine":
        import redis.asyncio as aredis

        from inventory_cache.engine import StockEngine
        from inventory_cache.settings import Settings

        client = aredis.Redis.from_url(job.redis_url)
        settings = Settings(redis_url=job.redis_url, redis_prefix=job.prefix)
        return StockEngine(client, settings), client.aclose
    from baseline import PgStockEngine

    pg = await PgStockEngine.connect(
        job.dsn, pool_size=job.pg_pool, synchronous_commit=job.side == "pg"
    )
    return pg, pg.close


async def _drive(job: Job, barrier: Barrier) -> dict[str, Any]:
    from inventory_cache.errors import InsufficientStock
    from inventory_cache.models import LineRequest

    engine, close = await _open(job)
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    start = time.perf_counter()
    measure_from = start + job.warmup
    deadline = measure_from + job.duration
    ok = refused = 0
    latencies: list[float] = []

    async def buyer(t: int) -> None:
        nonlocal ok, refused
        rng = random.Random(f"{job.run}-{job.proc}-{t}")
        i = 0
        while (t0 := time.perf_counter()) < deadline:
            i += 1
            line = LineRequest(_sku(job, rng), 1, LOCATION)
            try:
                await engine.reserve(order_id=f"{job.run}-{job.proc}-{t}-{i}", lines=[line])
                sold = True
            except InsufficientStock:
                sold = False
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= deadline:
                latencies.append((t1 - t0) * 1000)
                ok += sold
                refused += not sold

    try:
        await asyncio.gather(*(buyer(t) for t in range(job.concurrency)))
    finally:
        await close()
    return {"ok": ok, "refused": refused, "latencies": latencies}


def _worker(job: Job, barrier: Barrier, out: mp.Queue[dict[str, Any]]) -> None:
    import uvloop

    try:
        out.put(uvloop.run(_drive(job, barrier)))
    except Exception as exc:  # the parent reports it instead of waiting for a timeout
        barrier.abort()
        out.put({"error": f"{job.side} process {job.proc}: {exc!r}"})


async def _seed_engine(redis_url: str, prefix: str, scenario: str, skus: int) -> None:
    import redis.asyncio as aredis

    from inventory_cache.engine import StockEngine
    from inventory_cache.settings import Settings

    client = aredis.Redis.from_url(redis_url)
    engine = StockEngine(client, Settings(redis_url=redis_url, redis_prefix=prefix))
    await engine.mark_ready()
    if scenario == "hot":
        for n in range(5):
            await engine.inbound(ref=f"seed{n}", sku=HOT_SKU, location=LOCATION, qty=1_000_000)
    else:
        for lo in range(0, skus, 1000):
            await asyncio.gather(
                *(
                    engine.inbound(ref="seed", sku=f"S{i}", location=LOCATION, qty=1_000_000)
                    for i in range(lo, min(skus, lo + 1000))
                )
            )
    await client.aclose()


async def _drop_prefix(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)
    await client.aclose()


async def _seed_pg(dsn: str, scenario: str, skus: int) -> None:
    """Bulk-load the stock rows directly: seeding is not what is measured."""
    from baseline import create_schema

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await create_schema(conn)
        await conn.execute("TRUNCATE baseline_stock, baseline_reservations, baseline_movements")
        if scenario == "hot":
            await conn.execute(
                "INSERT INTO baseline_stock (sku, location, on_hand) VALUES (%s, %s, 1e9)",
                (HOT_SKU, LOCATION),
            )
        else:
            await conn.execute(
                "INSERT INTO baseline_stock (sku, location, on_hand)"
                " SELECT 'S' || g, %s, 1000000 FROM generate_series(0, %s - 1) AS g",
                (LOCATION, skus),
            )
        await conn.execute("VACUUM ANALYZE baseline_stock")


def measure(
    args: argparse.Namespace, side: str, scenario: str, prefix: str, dsn: str
) -> list[dict[str, Any]]:
    """One timed round of one side: every process's counts and latencies."""
    run = uuid.uuid4().hex[:8]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(args.processes)
    out: mp.Queue[dict[str, Any]] = ctx.Queue()
    procs = []
    for p in range(args.processes):
        job = Job(
            side=side,
            scenario=scenario,
            redis_url=args.redis_url,
            prefix=prefix,
            dsn=dsn,
            skus=args.skus,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            pg_pool=args.pg_pool,
            proc=p,
            run=run,
        )
        proc = ctx.Process(target=_worker, args=(job, barrier, out), daemon=True)
        proc.start()
        procs.append(proc)
    timeout = 60 + args.warmup + args.duration
    results = [out.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        raise SystemExit("; ".join(failed))
    return results


def run_scenario(args: argparse.Namespace, scenario: str, dsn: str) -> list[dict[str, Any]]:
    """Seed both sides once, then alternate them round after round: the machine's drift
    (other tenants, page cache, autovacuum) falls on both alike; each figure is a median."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(_seed_engine(args.redis_url, prefix, scenario, args.skus))
    asyncio.run(_seed_pg(dsn, scenario, args.skus))
    per_round: dict[str, list[int]] = {side: [] for side in SIDES}
    refused: dict[str, int] = dict.fromkeys(SIDES, 0)
    latencies: dict[str, list[float]] = {side: [] for side in SIDES}
    try:
        for _ in range(args.rounds):
            for side in SIDES:
                results = measure(args, side, scenario, prefix, dsn)
                per_round[side].append(round(sum(r["ok"] for r in results) / args.duration))
                refused[side] += sum(r["refused"] for r in results)
                latencies[side].extend(x for r in results for x in r["latencies"])
                print(f"{scenario} {side}: {per_round[side][-1]:,}/s", file=sys.stderr)
    finally:
        asyncio.run(_drop_prefix(args.redis_url, prefix))
    return [
        {
            "side": side,
            "scenario": scenario,
            "reservations_per_s": round(statistics.median(per_round[side])),
            "rounds": per_round[side],
            "refused": refused[side],
            **latency_summary(latencies[side]),
        }
        for side in SIDES
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an existing database; a scratch database is created beside it and dropped",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="tasks per process")
    parser.add_argument("--pg-pool", type=int, default=8, help="connections per process")
    parser.add_argument("--skus", type=int, default=10_000, help="catalogue of the spread case")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    parser.add_argument("--scenarios", default="hot,spread")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 120 or not 0 < args.processes <= 16:
        parser.error("duration must be in (0, 120] s and processes in 1..16")
    require_loopback(args.redis_url)
    require_loopback(args.database_url)

    db = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    dsn = recreate_database(args.database_url, db)
    rows: list[dict[str, Any]] = []
    try:
        for scenario in args.scenarios.split(","):
            rows.extend(run_scenario(args, scenario, dsn))
    finally:
        drop_database(args.database_url, db)

    by = {(r["scenario"], r["side"]): r for r in rows}
    table = []
    for scenario in args.scenarios.split(","):
        ours = by[(scenario, "engine")]["reservations_per_s"]
        pg = by[(scenario, "pg")]["reservations_per_s"]
        pga = by[(scenario, "pg-async-commit")]["reservations_per_s"]
        table.append(
            [
                scenario,
                f"{ours:,}",
                f"{pg:,}",
                f"{ours / max(pg, 1):.1f}x",
                f"{pga:,}",
                f"{ours / max(pga, 1):.1f}x",
                f"{by[(scenario, 'engine')]['p99']} / {by[(scenario, 'pg')]['p99']}",
            ]
        )
    header = [
        "SKUs",
        "StockEngine res/s",
        "PG baseline res/s",
        "ratio",
        "PG, synchronous_commit=off",
        "ratio",
        "p99 ms ours / PG",
    ]
    print(
        f"{args.processes} processes x {args.concurrency} tasks; median of {args.rounds}"
        f" alternating rounds of {args.duration:g} s (after {args.warmup:g} s warm-up);"
        f" PG pool {args.pg_pool} per process"
    )
    print(markdown_table(header, table))
    report = {"config": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
