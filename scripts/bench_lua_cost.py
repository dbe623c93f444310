#!/usr/bin/env python
"""What one reservation costs Redis, in instructions: a figure that does not move with the
machine's load.

    .venv/bin/python scripts/bench_lua_cost.py [--calls 1000] [--source variant.lua]

Starts a private Redis (`redis-server` on a free loopback port, no persistence) under
`valgrind --tool=callgrind`, warms it up with the engine's own set-up (readiness, one SKU
with stock at `north`), then sends `--calls` one-unit orders of that SKU, naming no
location, through `reserve_order-2.lua` with the keys and arguments `StockEngine` sends
with the location priority `north` (pipelines of 250)
and prints the instructions Redis executed per call, counted from just before the first
of them to just after the last (`callgrind_control -z`, then `-d`). Wall-clock timings of
a script under load move by tens of percent from run to run on a shared 2-core machine;
this count repeats to within 1%, so a change to a Lua script can be judged by it alone.

`--source FILE` measures another version of the script (the whole source, includes
expanded, as `StockEngine` loads it: `--dump FILE` writes the current one) side by side
with the project's. The Redis runs on its own port and is shut down afterwards; needs
`valgrind` and `redis-server` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from bench_engine import Bench, order_key, reserve_order_argv
from benchlib import free_port

from inventory_cache import script_calls
from inventory_cache.scripts import load_scripts

PIPELINE = 250


def instructions(dump: Path) -> int:
    """The `summary:` of a callgrind dump: every instruction counted into it."""
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary in {dump}")


def send(client: Any, sha: str, bench: Bench, calls: int, tag: str) -> list[Any]:
    retention = bench.settings.finished_retention_seconds * 1000
    replies: list[Any] = []
    pipe = client.pipeline(transaction=False)
    for i in range(calls):
        now = time.time_ns() // 1_000_000
        pipe.evalsha(sha, *reserve_order_argv(bench.keys, "HOT", f"{tag}{i}", now, retention))
        if len(pipe) == PIPELINE or i == calls - 1:
            replies += pipe.execute()
    return replies


def measure(sources: dict[str, str], calls: int, warmup: int) -> dict[str, int]:
    """Instructions per call of each source, on one Redis under callgrind."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lua-cost-") as tmp:
        out = Path(tmp) / "callgrind.out"
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client: Any = redis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("redis-server under valgrind did not start") from None
                    time.sleep(0.2)
            bench = Bench(url, 1, "luacost")
            asyncio.run(_setup(bench))
            pid = str(client.info("server")["process_id"])
            result: dict[str, int] = {}
            for name, source in sources.items():
                sha = client.script_load(source)
                _check(send(client, sha, bench, warmup, f"w{name}-"))
                subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
                _check(send(client, sha, bench, calls, f"m{name}-"))
                subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
                dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
                result[name] = instructions(dumps[-1]) // calls
                for dump in dumps:
                    dump.unlink()
                _clear_orders(client, bench)
            return result
        finally:
            with contextlib.suppress(redis.ConnectionError):
                client.shutdown(nosave=True)
            client.close()
            server.wait(timeout=60)


async def _setup(bench: Bench) -> None:
    await bench.engine.mark_ready()
    await bench.engine.adjust(
        ref="bench", sku="HOT", location="north", reason="count", set_on_hand=10**9
    )
    await bench.engine_client.aclose()
    await bench.raw_client.aclose()


def _clear_orders(client: Any, bench: Bench) -> None:
    """Every key but the stock and the readiness markers, so that each source meets the
    same Redis (streams, indexes and expiry sets as short as for the first)."""
    for key in client.scan_iter(match=f"{bench.prefix}:*", count=5000):
        if order_key(key):
            client.unlink(key)


def _check(replies: list[Any]) -> None:
    """Every call must have reserved: a variant that fails early would look cheap."""
    for reply in replies:
        if json.loads(reply).get("status") != "active":
            raise SystemExit(f"a call did not reserve: {reply!r}")


def main(argv: list[str] | None = None) -> dict[str, int]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1000, help="measured calls per source")
    p.add_argument("--warmup", type=int, default=200, help="calls before counting")
    p.add_argument("--source", type=Path, help="another version of reserve_order-2.lua")
    p.add_argument("--dump", type=Path, help="write the project's expanded script here")
    args = p.parse_args(argv)
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH")
    project = load_scripts()[script_calls.reserve_order.__name__].source
    if args.dump:
        args.dump.write_text(project)
    sources = {"project": project}
    if args.source:
        sources[str(args.source)] = args.source.read_text()
    result = measure(sources, args.calls, args.warmup)
    for name, per_call in result.items():
        print(
            f"{name}: {per_call:,} instructions per one-line reserve_order-2.lua call"
            f" (Redis under callgrind, {args.calls:,} calls after {args.warmup:,})"
        )
    return result


if __name__ == "__main__":
    main()
