#!/usr/bin/env python
"""The engine's cost over the bare client: reservations/s and availability reads/s.

In one process and one run, for each client concurrency (`--tasks`, default 16 and 64)
and each key spread (one hot SKU, or `--skus` SKUs picked at random):

- reserve: `StockEngine.reserve` of one unit (one `reserve_order-2.lua` call: the order
  index and the part, coalesced into pipelines by the batcher) next to raw redis-py
  asyncio EVALSHA of the same `reserve_order-2.lua` with the same keys and arguments,
  one call per round trip;
- read: `StockEngine.availability` (readiness marker + HGETALL + parsing) next to a raw
  HGETALL of the same stock hash.

Each row runs the same number of asyncio tasks, each calling in a loop, for `--seconds`
after a short warm-up, and reports calls/s, p50/p99 latency and engine/raw. Target:
engine >= 1.0x raw in every row (the engine coalesces calls into pipelines; raw pays a
round trip per call); exits 1 when a row is under it. Both sides share the event loop
implementation (uvloop when installed, as the API server uses) and the redis-py version,
which are printed.

    .venv/bin/python scripts/bench_engine.py
    .venv/bin/python scripts/bench_engine.py --seconds 2 --tasks 16 --skus 1000

Loopback Redis only; its own key prefix, deleted afterwards (also between rows, so the
reservations' records do not pile up).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
import redis.asyncio as aredis
from benchlib import latency_summary, markdown_table, require_loopback

from inventory_cache import script_calls
from inventory_cache.engine import StockEngine
from inventory_cache.keys import Keys
from inventory_cache.models import LineRequest
from inventory_cache.settings import Settings

Call = Callable[[int], Awaitable[Any]]  # one call; its argument is unique to it
TARGET = 1.0  # engine / raw, every row

SEQ = itertools.count()


def reserve_order_argv(
    keys: Keys, sku: str, order_id: str, now: int, retention_ms: int
) -> list[Any]:
    """EVALSHA's arguments after the sha for a one-unit order of `sku` (no customer, no
    bundle, a 15-minute hold), in `reserve_order-2.lua`'s KEYS and ARGV order, as the
    engine sends them."""
    g = keys.group_of(sku)
    return [
        9,
        keys.ready(keys.group_of(order_id)),
        keys.order_index(order_id),
        keys.ready(g),
        keys.part(g, order_id),
        keys.expiry(g),
        keys.events(g),
        keys.stock(sku),
        keys.limit(sku),
        keys.preorders(sku),
        order_id,
        "tok",
        now,
        now + 900_000,
        "fp",
        orjson.dumps({"groups": {str(g): [sku]}}),
        retention_ms,
        "",
        "1",
        "fp",
        1,
        orjson.dumps([[sku, "", 1]]),
        "",
        "north",
    ]


def order_key(key: bytes) -> bool:
    """A key that reservations wrote (parts, indexes, streams, expiry sets): neither a
    stock hash nor a readiness marker, which a bench keeps between its rows."""
    return b":s:" not in key and not key.endswith(b":ready")


@dataclass
class Tally:
    """What one side did over all its slices of a row."""

    calls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # this process's CPU seconds: what the client pays, whatever the load
    latencies: list[float] = field(default_factory=list)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu * 1e6 / max(1, self.calls)

    def latency(self) -> str:
        lat = latency_summary(x * 1000 for x in self.latencies)
        return f"{lat['p50']:.2f} / {lat['p99']:.2f}"


async def window(call: Call, tasks: int, seconds: float, warmup: float, into: Tally) -> None:
    """`tasks` loops calling `call` back to back; calls finished inside the window count."""
    state = {"counting": False, "stop": False}

    async def loop() -> None:
        while not state["stop"]:
            t0 = time.perf_counter()
            await call(next(SEQ))
            if state["counting"]:
                into.latencies.append(time.perf_counter() - t0)

    calls_before = len(into.latencies)
    runners = [asyncio.create_task(loop()) for _ in range(tasks)]
    await asyncio.sleep(warmup)
    state["counting"] = True
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    state["counting"] = False
    into.seconds += time.perf_counter() - started
    into.cpu += time.process_time() - cpu
    into.calls += len(into.latencies) - calls_before
    state["stop"] = True
    await asyncio.gather(*runners)


async def compare(
    engine: Call, raw: Call, tasks: int, seconds: float, slices: int
) -> dict[str, Tally]:
    """Engine and raw in alternating slices (ABBA...), so that both meet the same
    background load on a shared machine: ratios stay meaningful when absolutes do not."""
    out = {"engine": Tally(), "raw": Tally()}
    for i in range(slices):
        order = [("engine", engine), ("raw", raw)]
        if i % 2:
            order.reverse()
        for side, call in order:
            await window(call, tasks, seconds / slices, 0.1, out[side])
    return out


class Bench:
    def __init__(self, url: str, skus: int, prefix: str) -> None:
        self.prefix = prefix
        self.settings = Settings(
            redis_url=url, redis_prefix=self.prefix, location_priority=["north"]
        )
        self.engine_client = aredis.Redis.from_url(url)
        self.raw_client = aredis.Redis.from_url(url)
        self.engine = StockEngine(self.engine_client, self.settings)
        self.keys = self.engine.keys
        self.reserve = self.engine.scripts[script_calls.reserve_order.__name__]
        self.hot = ["HOT"]
        self.spread = [f"S{i}" for i in range(skus)]
        self.rng = random.Random(1)

    async def setup(self) -> None:
        await self.engine.mark_ready()
        await self.raw_client.script_load(self.reserve.source)
        await asyncio.gather(
            *(
                self.engine.adjust(
                    ref="bench", sku=s, location="north", reason="count", set_on_hand=10**9
                )
                for s in self.hot + self.spread
            )
        )

    async def clear_orders(self) -> None:
        """Drop every key but stock and readiness: reservations, indexes, streams."""
        pipe = self.raw_client.pipeline(transaction=False)
        async for key in self.raw_client.scan_iter(match=f"{self.prefix}:*", count=5000):
            if order_key(key):
                pipe.unlink(key)
            if len(pipe) >= 2000:
                await pipe.execute()
        await pipe.execute()

    async def drop_all(self) -> None:
        pipe = self.raw_client.pipeline(transaction=False)
        async for key in self.raw_client.scan_iter(match=f"{self.prefix}:*", count=5000):
            pipe.unlink(key)
            if len(pipe) >= 2000:
                await pipe.execute()
        await pipe.execute()
        await self.engine_client.aclose()
        await self.raw_client.aclose()

    # ---- the calls
    def engine_reserve(self, skus: list[str], tag: str) -> Call:
        async def call(seq: int) -> Any:
            sku = skus[0] if len(skus) == 1 else self.rng.choice(skus)
            return await self.engine.reserve(order_id=f"{tag}{seq}", lines=[LineRequest(sku, 1)])

        return call

    def raw_reserve(self, skus: list[str], tag: str) -> Call:
        """`reserve_order-2.lua`, the script the engine runs for this order, with the keys
        and arguments the engine sends, built inline: the script without the engine."""
        sha, client, keys = self.reserve.sha, self.raw_client, self.keys
        retention = self.settings.finished_retention_seconds * 1000

        async def call(seq: int) -> Any:
            sku = skus[0] if len(skus) == 1 else self.rng.choice(skus)
            now = time.time_ns() // 1_000_000
            return await client.evalsha(
                sha, *reserve_order_argv(keys, sku, f"{tag}{seq}", now, retention)
            )

        return call

    def engine_read(self, skus: list[str]) -> Call:
        async def call(seq: int) -> Any:
            sku = skus[0] if len(skus) == 1 else self.rng.choice(skus)
            return await self.engine.availability(sku)

        return call

    def raw_read(self, skus: list[str]) -> Call:
        client, keys = self.raw_client, self.keys

        async def call(seq: int) -> Any:
            sku = skus[0] if len(skus) == 1 else self.rng.choice(skus)
            return await client.hgetall(keys.stock(sku))

        return call


async def run(args: argparse.Namespace) -> int:
    bench = Bench(args.url, args.skus, args.prefix)
    rows: list[list[object]] = []
    ratios: list[float] = []
    try:
        await bench.setup()
        row = 0
        for op in ("reserve", "read"):
            for spread_name, skus in (("hot", bench.hot), (f"{args.skus} random", bench.spread)):
                for tasks in args.tasks:
                    row += 1
                    tag = f"r{row}-"
                    if op == "reserve":
                        eng_call, raw_call = (
                            bench.engine_reserve(skus, "e" + tag),
                            bench.raw_reserve(skus, "w" + tag),
                        )
                    else:
                        eng_call, raw_call = bench.engine_read(skus), bench.raw_read(skus)
                    out = await compare(eng_call, raw_call, tasks, args.seconds, args.slices)
                    if op == "reserve":
                        await bench.clear_orders()
                    ratio = out["engine"].calls_per_s / out["raw"].calls_per_s
                    ratios.append(ratio)
                    rows.append(
                        [
                            op,
                            spread_name,
                            tasks,
                            f"{out['engine'].calls_per_s:,.0f}",
                            f"{out['raw'].calls_per_s:,.0f}",
                            f"{ratio:.2f}x",
                            out["engine"].latency(),
                            out["raw"].latency(),
                            f"{out['engine'].cpu_us:.0f} / {out['raw'].cpu_us:.0f}",
                        ]
                    )
                    print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
    finally:
        await bench.drop_all()
    print(
        f"engine vs raw redis-py, {dt.date.today()}: redis-py {redis.__version__},"
        f" {args.loop_name}, Redis {args.url}, {args.seconds:g} s per side and row,"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        markdown_table(
            [
                "op",
                "SKUs",
                "tasks",
                "engine calls/s",
                "raw calls/s",
                "engine/raw",
                "engine p50 / p99 ms",
                "raw p50 / p99 ms",
                "client CPU µs/call engine / raw",
            ],
            rows,
        )
    )
    worst = min(ratios)
    met = worst >= TARGET
    print()
    print(f"lowest engine/raw: {worst:.2f}x (target >= {TARGET}x): {'met' if met else 'MISSED'}")
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--url", default=os.environ.get("INVENTORY_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per side and row")
    p.add_argument("--slices", type=int, default=4, help="alternating engine/raw slices per row")
    p.add_argument("--tasks", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64])
    p.add_argument("--skus", type=int, default=10_000, help="SKUs of the spread rows")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--prefix", default="bench" + uuid.uuid4().hex[:8], help="Redis key prefix")
    args = p.parse_args(argv)
    require_loopback(args.url)
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            args.loop = "asyncio"
    args.loop_name = args.loop
    if args.loop == "uvloop":
        return uvloop.run(run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
