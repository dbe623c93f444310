#!/usr/bin/env python
"""Does Redis memory level off under a steady mixed load? The 5-minute mixed run.

    .venv/bin/python scripts/bench_memory_steady.py                 # 5 minutes
    .venv/bin/python scripts/bench_memory_steady.py --seconds 60    # a quick look

Finished orders, stream entries and idempotency records all leave Redis after a window;
if one of them did not, memory would grow for as long as the service sells. This starts
the API (`uvicorn --workers 2`, as `bench_all.py`) and its write-behind worker on a private
`redis-server` (so `used_memory` is this run's alone), with a short finished-order window
and reservation TTL (`--retention`, default 60 s: an order's index stays until its
reservation would have expired) so that the window is passed well within the run, and offers
`scripts/loadgen.py`'s mixed workload (95% availability reads, 5% checkouts that reserve
one unit, then ship or cancel it) at a fixed rate. It samples `INFO memory` every
`--sample` seconds and prints JSON: the samples, the growth over the last third of the run
(steady state: close to 0), and the estimate of the README's sizing formula for the rates
measured, against the used memory of the last third.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import bench_all
import loadgen
import redis
from benchlib import drop_database, free_port, recreate_database, require_loopback
from local_cluster import LocalServers

from inventory_cache.keys import Keys

# The README's sizing formula, bytes per unit (Redis memory section).
FORMULA = {
    "base": 2_000_000,
    "sku_location_1": 116,
    "finished": 687,
    "movement": 354,
    "stream_entry": 224,
}


def sampler(url: str, every: float, stop: threading.Event, out: list[dict[str, Any]]) -> None:
    """used_memory, and what the event streams take of it (they keep an hour of entries
    for the feed and the behind check, so they grow for the first hour by design)."""
    # Any: redis-py types each reply as `Awaitable[T] | T`.
    client: Any = redis.Redis.from_url(url)
    streams = [Keys().events(g) for g in Keys().all_groups()]
    started = time.monotonic()
    while not stop.is_set():
        pipe = client.pipeline(transaction=False)
        pipe.info("memory")
        for key in streams:
            pipe.memory_usage(key, samples=0)
            pipe.xlen(key)
        replies = pipe.execute()
        used = int(replies[0]["used_memory"])
        stream_bytes = sum(int(b or 0) for b in replies[1::2])
        out.append(
            {
                "t": round(time.monotonic() - started, 1),
                "used_memory": used,
                "stream_bytes": stream_bytes,
                "stream_entries": sum(int(n) for n in replies[2::2]),
                "other_bytes": used - stream_bytes,
                "load": round(os.getloadavg()[0], 2),
            }
        )
        stop.wait(every)
    client.close()


def breakdown(client: Any) -> dict[str, dict[str, int]]:
    """Keys and bytes (MEMORY USAGE) by kind, the part of the name after the slot group's
    hash tag (`s`, `r`, `o`, `ev`...), and the entries the streams hold: where the memory
    is, if it does not level off."""
    out: dict[str, dict[str, int]] = {}
    for key in client.scan_iter(count=5000):
        name = key.decode()
        kind = name.split("}:", 1)[1].split(":", 1)[0] if "}:" in name else name.split(":")[1]
        row = out.setdefault(kind, {"keys": 0, "bytes": 0, "entries": 0})
        row["keys"] += 1
        row["bytes"] += int(client.memory_usage(key, samples=0) or 0)
        if kind == "ev":
            row["entries"] += int(client.xlen(key))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--rate", type=float, default=1000.0, help="offered operations/s")
    p.add_argument("--retention", type=int, default=60, help="finished-order window, s")
    p.add_argument("--sample", type=float, default=10.0)
    p.add_argument("--skus", type=int, default=1000)
    args = p.parse_args(argv)
    require_loopback(args.database_url)
    out = Path(tempfile.mkdtemp(prefix="inventory-memory-"))
    db = f"bench_memory_{uuid.uuid4().hex[:8]}"
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    server = LocalServers(1)
    server.start()
    try:
        redis_url = server.url
        env = dict(os.environ)
        env.update(
            {
                "INVENTORY_REDIS_URL": redis_url,
                "INVENTORY_DATABASE_URL": recreate_database(args.database_url, db),
                "INVENTORY_LOCATION_PRIORITY": "north",
                "INVENTORY_FINISHED_RETENTION_SECONDS": str(args.retention),
                # An order's index stays until its reservation would have expired.
                "INVENTORY_RESERVATION_TTL_SECONDS": str(args.retention),
            }
        )
        try:
            key = bench_all.prepare_ours(env)
            port = free_port()
            api = bench_all.uvicorn_cmd("inventory_cache.api.main:app_from_env", port, 2)
            worker = [str(bench_all.BIN / "inventory-cache"), "worker"]
            with (
                bench_all.process(api, env, out / "api.log"),
                bench_all.process(worker, env, out / "worker.log"),
            ):
                target = f"http://127.0.0.1:{port}"
                bench_all.wait_http(target + "/v1/ping")
                thread = threading.Thread(
                    target=sampler, args=(redis_url, args.sample, stop, samples), daemon=True
                )
                thread.start()
                report = loadgen.run(
                    loadgen.Config(
                        target=target,
                        scenario="mixed",
                        processes=2,
                        connections=32,
                        duration=args.seconds,
                        max_requests=10**9,
                        rate=args.rate,
                        skus=args.skus,
                        api_key=key,
                        label="memory steady state",
                    )
                )
                stop.set()
                thread.join()
                time.sleep(3)  # the worker's last batch, then the final reading
                final: Any = redis.Redis.from_url(redis_url)
                used_end = int(final.info("memory")["used_memory"])
                by_kind = breakdown(final)
                final.close()
        finally:
            drop_database(args.database_url, db)
    finally:
        server.stop()
    third = [s for s in samples if s["t"] >= samples[-1]["t"] * 2 / 3]
    checkouts = int(report["by_op"].get("reserve", {}).get("count", 0))
    reserves_per_s = checkouts / report["elapsed_s"]
    # An order's index and part stay until its reservation would have expired (the TTL)
    # and then for the retention window: at most TTL + retention seconds of orders.
    finished_held = reserves_per_s * min(2 * args.retention, report["elapsed_s"])
    entries = third[-1]["stream_entries"]
    estimate_other = (
        FORMULA["base"]
        + FORMULA["sku_location_1"] * args.skus
        + FORMULA["movement"] * args.skus  # the seeding inbounds' records (kept 7 days)
        + FORMULA["finished"] * finished_held
    )
    estimate_streams = FORMULA["stream_entry"] * entries
    other = statistics.median(s["other_bytes"] for s in third)
    result = {
        "seconds": args.seconds,
        "offered_ops_per_s": args.rate,
        "ops_per_s": report["ops_per_s"],
        "checkouts_per_s": round(reserves_per_s, 1),
        "checkouts": checkouts,
        "errors": report["errors"],
        "retention_s": args.retention,
        "samples": samples,
        "used_memory_end": used_end,
        "keys_by_kind": by_kind,
        "last_third": {
            "seconds": round(third[-1]["t"] - third[0]["t"], 1),
            "other_bytes_median": other,
            "other_bytes_growth": third[-1]["other_bytes"] - third[0]["other_bytes"],
            "stream_bytes_growth": third[-1]["stream_bytes"] - third[0]["stream_bytes"],
            "stream_entries_end": entries,
        },
        "formula": {
            "everything_but_streams": round(estimate_other),
            "measured_vs_formula": round(other / estimate_other, 3),
            "streams": round(estimate_streams),
            "streams_measured_vs_formula": round(
                third[-1]["stream_bytes"] / max(estimate_streams, 1), 3
            ),
        },
        "logs": str(out),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
