#!/usr/bin/env python
"""Reservations/s through StockEngine on one Redis vs a 3-master Redis Cluster, no HTTP.

Starts both on loopback ports of this machine (a plain `redis-server`, and 3 masters
without replicas joined by `redis-cli --cluster create`, from `scripts/local_cluster.py`), seeds
each, then drives them in alternating rounds from the *same* client processes: each
process runs `--concurrency` asyncio tasks reserving in a closed loop, through the
service's own client factory (`connection.make_async_redis`, so the cluster side uses
redis-py's cluster client as `INVENTORY_REDIS_CLUSTER=true` does). Scenarios:

- spread: one unit of one SKU drawn from the catalogue per order;
- spread-3: three SKUs per order, usually three slot groups (on the cluster, three masters);
- hot: every order wants the same SKU (one slot group, so one master).

Besides reservations/s and latency it samples every server's CPU time during the measured
window, to show where the work lands. Each figure is a median of `--rounds`.

    .venv/bin/python scripts/bench_cluster.py [--write]

With `--write` it replaces the `## Redis Cluster` section of BENCHMARKS.md (its
`### Notes` are kept), creating the file if needed. Loopback only; the servers are its
own and are stopped (with their files) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from benchlib import latency_summary, markdown_table, process_cpu_seconds
from local_cluster import LocalCluster, LocalServers

ROOT = Path(__file__).resolve().parent.parent

LOCATION = "north"
HOT_SKU = "HOT-1"
TARGETS = ("1 Redis", "3-master cluster")
SECTION = "Redis Cluster"


@dataclass(frozen=True)
class Job:
    url: str
    cluster: bool
    prefix: str
    scenario: str
    skus: int
    concurrency: int
    warmup: float
    duration: float
    run: str


def _settings(url: str, cluster: bool, prefix: str) -> Any:
    from inventory_cache.settings import Settings

    return Settings(
        redis_url=url, redis_cluster=cluster, redis_prefix=prefix, location_priority=LOCATION
    )


async def _drive(job: Job, proc: int, barrier: Barrier) -> dict[str, Any]:
    from inventory_cache.connection import make_async_redis
    from inventory_cache.engine import StockEngine
    from inventory_cache.errors import InsufficientStock
    from inventory_cache.models import LineRequest

    settings = _settings(job.url, job.cluster, job.prefix)
    client = make_async_redis(settings)
    engine = StockEngine(client, settings)
    await engine.check_ready()  # connects (and learns the topology) before the clock starts
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    start = time.perf_counter()
    measure_from, deadline = start + job.warmup, start + job.warmup + job.duration
    ok = refused = 0
    latencies: list[float] = []

    def lines(rng: random.Random) -> list[LineRequest]:
        if job.scenario == "hot":
            return [LineRequest(HOT_SKU, 1, LOCATION)]
        n = 3 if job.scenario == "spread-3" else 1
        return [LineRequest(f"S{i}", 1, LOCATION) for i in rng.sample(range(job.skus), n)]

    async def buyer(t: int) -> None:
        nonlocal ok, refused
        rng = random.Random(f"{job.run}-{proc}-{t}")
        i = 0
        while (t0 := time.perf_counter()) < deadline:
            i += 1
            try:
                await engine.reserve(order_id=f"{job.run}-{proc}-{t}-{i}", lines=lines(rng))
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
        await client.aclose()
    return {"ok": ok, "refused": refused, "latencies": latencies}


def _client_process(proc: int, barrier: Barrier, jobs: Any, out: Any) -> None:
    """One client process for the whole benchmark: it runs every job, on either target."""
    import uvloop

    while (job := jobs.get()) is not None:
        try:
            out.put(uvloop.run(_drive(job, proc, barrier)))
        except Exception as exc:  # reported by the parent instead of a hang
            barrier.abort()
            out.put({"error": f"client process {proc}: {exc!r}"})


async def _seed(url: str, cluster: bool, prefix: str, skus: int) -> None:
    from inventory_cache.connection import make_async_redis
    from inventory_cache.engine import StockEngine

    settings = _settings(url, cluster, prefix)
    client = make_async_redis(settings)
    engine = StockEngine(client, settings)
    await engine.mark_ready()
    for n in range(5):
        await engine.inbound(ref=f"seed{n}", sku=HOT_SKU, location=LOCATION, qty=1_000_000)
    for lo in range(0, skus, 1000):
        await asyncio.gather(
            *(
                engine.inbound(ref="seed", sku=f"S{i}", location=LOCATION, qty=1_000_000)
                for i in range(lo, min(skus, lo + 1000))
            )
        )
    await client.aclose()


def cpu_seconds(pids: list[int]) -> list[float]:
    """User + system CPU time of each process so far (Linux /proc)."""
    return [process_cpu_seconds(pid) for pid in pids]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        ctx = mp.get_context("spawn")
        # The parent takes part in the barrier too, to sample server CPU over the window.
        self.barrier = ctx.Barrier(args.processes + 1)
        self.out: Any = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(args.processes)]
        self.procs = [
            ctx.Process(
                target=_client_process, args=(p, self.barrier, self.jobs[p], self.out), daemon=True
            )
            for p in range(args.processes)
        ]
        for proc in self.procs:
            proc.start()

    def close(self) -> None:
        for q in self.jobs:
            q.put(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    def round(self, job: Job, servers: list[int]) -> dict[str, Any]:
        """One timed round on one target: reservations/s, latencies, server and client CPU."""
        for q in self.jobs:
            q.put(job)
        watched = servers + [p.pid for p in self.procs if p.pid is not None]
        self.barrier.wait(timeout=60)
        time.sleep(job.warmup)
        before = cpu_seconds(watched)
        time.sleep(job.duration)
        after = cpu_seconds(watched)
        results = [self.out.get(timeout=60) for _ in self.procs]
        failed = [r["error"] for r in results if "error" in r]
        if failed:
            raise SystemExit("; ".join(failed))
        return {
            "per_s": sum(r["ok"] for r in results) / job.duration,
            "refused": sum(r["refused"] for r in results),
            "latencies": [x for r in results for x in r["latencies"]],
            "cpu": [(b - a) / job.duration for a, b in zip(before, after, strict=True)],
            "servers": len(servers),
        }


def summarise(scenario: str, target: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds; CPU as µs per reservation and the busiest server's share."""
    per_s = statistics.median(r["per_s"] for r in rounds)
    n = rounds[0]["servers"]
    cpu = [statistics.median(c) for c in zip(*(r["cpu"] for r in rounds), strict=True)]
    servers, clients = cpu[:n], cpu[n:]
    return {
        "scenario": scenario,
        "target": target,
        "per_s": round(per_s),
        "rounds": [round(r["per_s"]) for r in rounds],
        "refused": sum(r["refused"] for r in rounds),
        "server_us": round(sum(servers) / max(per_s, 1) * 1e6),
        "client_us": round(sum(clients) / max(per_s, 1) * 1e6),
        "busiest_server_pct": round(max(servers) * 100),
        **latency_summary(x for r in rounds for x in r["latencies"]),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    single = LocalServers(1)
    cluster = LocalCluster(masters=3, replicas=0)
    bench: Bench | None = None
    try:
        single.start()
        cluster.start()
        targets = {
            TARGETS[0]: (single.url, False, [p.pid for p in single.procs.values()]),
            TARGETS[1]: (cluster.url, True, [p.pid for p in cluster.procs.values()]),
        }
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        for url, is_cluster, _ in targets.values():
            asyncio.run(_seed(url, is_cluster, prefix, args.skus))
        bench = Bench(args)
        rows = []
        for scenario in args.scenarios.split(","):
            rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
            for _ in range(args.rounds):
                for name, (url, is_cluster, pids) in targets.items():
                    job = Job(
                        url=url,
                        cluster=is_cluster,
                        prefix=prefix,
                        scenario=scenario,
                        skus=args.skus,
                        concurrency=args.concurrency,
                        warmup=args.warmup,
                        duration=args.duration,
                        run=uuid.uuid4().hex[:8],
                    )
                    r = bench.round(job, pids)
                    rounds[name].append(r)
                    print(f"{scenario} {name}: {r['per_s']:,.0f}/s", file=sys.stderr)
            for name in TARGETS:
                rows.append(summarise(scenario, name, rounds[name]))
        return rows
    finally:
        if bench is not None:
            bench.close()
        cluster.stop()
        single.stop()


def section(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    by = {(r["scenario"], r["target"]): r for r in rows}
    table = []
    for scenario in args.scenarios.split(","):
        one, three = by[(scenario, TARGETS[0])], by[(scenario, TARGETS[1])]
        table.append(
            [
                scenario,
                f"{one['per_s']:,}",
                f"{three['per_s']:,}",
                f"{three['per_s'] / max(one['per_s'], 1):.2f}x",
                f"{one['p99']} / {three['p99']}",
                f"{one['client_us']} / {three['client_us']}",
                f"{one['server_us']} / {three['server_us']}",
                f"{one['busiest_server_pct']}% / {three['busiest_server_pct']}%",
            ]
        )
    header = [
        "scenario",
        "1 Redis res/s",
        "3-master cluster res/s",
        "cluster / 1",
        "p99 ms (1 / cluster)",
        "client CPU µs/res (1 / cluster)",
        "Redis CPU µs/res, all servers (1 / cluster)",
        "busiest Redis, % of a core (1 / cluster)",
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"StockEngine without HTTP, `scripts/bench_cluster.py`: {args.processes} client"
        f" processes x {args.concurrency} tasks, the same processes driving both targets"
        f" in alternating rounds; median of {args.rounds} rounds of {args.duration:g} s"
        f" (after {args.warmup:g} s of warm-up); {args.skus:,} SKUs; every server on this"
        f" machine ({os.cpu_count()} cores, load average {load} at the end), no persistence,"
        " no replicas. CPU is measured over the window from /proc: per reservation for the"
        " client processes and for all Redis servers together, and the busiest server's"
        " share of one core.\n\n" + markdown_table(header, table)
    )


def write_section(text: str) -> Path:
    from bench_all import replace_sections

    doc = ROOT / "BENCHMARKS.md"
    old = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    doc.write_text(replace_sections(old, {SECTION: text}))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="tasks per process")
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="spread,spread-3,hot")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 60 or not 0 < args.processes <= 16 or args.rounds < 1:
        parser.error("duration in (0, 60] s, processes in 1..16, rounds >= 1")
    text = section(args, run(args))
    print(f"## {SECTION}\n\n{text}")
    if args.write:
        print(f"updated {write_section(text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
