#!/usr/bin/env python
"""What our ASGI stack costs a request: `GET /v1/ping` of the service against a bare
FastAPI app's, the same uvicorn command line, alternating.

    .venv/bin/python scripts/bench_asgi.py [--rounds 3] [--before main]

The bare app (`bare_app` below) has one route answering the same JSON the same way
(orjson into a `Response`) and nothing else: no middleware, no exception handlers, no
other routes. The service runs without its write-behind worker, so the figure is the
HTTP layer's alone. Both servers (and, with `--before REV`, the service at that commit,
exported with `git archive` and run from there through `PYTHONPATH`, same libraries)
run at once; `scripts/loadgen.py`'s `ping` scenario drives each in turn, the order
reversed every other round. Prints each side's median requests/s with its min-max, the
median of the per-round ratios to the bare app with theirs, and the 1-minute load
average before and after each run. Exits 1 when ours serves less than `--target` (0.9)
of the bare app's rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import bench_all
import loadgen
import orjson
from benchlib import (
    drop_database,
    free_port,
    markdown_table,
    recreate_database,
    require_loopback,
)
from fastapi import FastAPI
from starlette.responses import Response

ROOT = bench_all.ROOT


def bare_app() -> FastAPI:
    """uvicorn `--factory` entry point: the bare app."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/v1/ping")
    async def ping() -> Response:
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    return app


def export(rev: str, into: Path) -> Path:
    """The tree of commit `rev`, without touching the repository's worktrees."""
    archive = into / "tree.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev], check=True
    )
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def wait_started(log: Path, workers: int, timeout: float = 120.0) -> None:
    """Until every worker process has started its app: one answering is not enough (a
    worker still importing would leave the first run to the other)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"{log.stem}: {workers} workers did not start in {timeout:g} s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--load-processes", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", help="also run the service at this commit")
    p.add_argument("--target", type=float, default=0.9, help="ours ÷ bare, at least")
    args = p.parse_args(argv)
    require_loopback(args.redis_url)
    require_loopback(args.database_url)
    run = uuid.uuid4().hex[:8]
    out = Path(tempfile.mkdtemp(prefix="bench-asgi-"))
    bases: dict[str, dict[str, str]] = {}
    dbs: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        # side → (uvicorn factory and its extra flags, environment)
        sides: dict[str, tuple[list[str], dict[str, str]]] = {}
        trees: dict[str, Path | None] = {"ours": None}
        if args.before:
            trees["before"] = export(args.before, out)
        for side, tree in trees.items():
            env = dict(os.environ)
            flags = ["inventory_cache.api.main:app_from_env"]
            if tree is not None:
                env["PYTHONPATH"] = str(tree)
                flags += ["--app-dir", str(tree)]  # uvicorn puts its app dir first
            db = f"bench_asgi_{side}_{run}"
            dbs.append(db)
            env.update(
                {
                    "INVENTORY_REDIS_URL": args.redis_url,
                    "INVENTORY_REDIS_PREFIX": f"basgi{side}{run}",
                    "INVENTORY_DATABASE_URL": recreate_database(args.database_url, db),
                }
            )
            bases[side] = env
            bench_all.cli(env, "migrate")
            bench_all.cli(env, "warmup")
            sides[side] = (flags, env)
        sides["bare"] = (
            ["bench_asgi:bare_app", "--app-dir", str(ROOT / "scripts")],
            dict(os.environ),
        )
        urls: dict[str, str] = {}
        try:
            for side, (flags, env) in sides.items():
                port = free_port()
                cmd = [*bench_all.uvicorn_cmd(flags[0], port, args.server_workers), *flags[1:]]
                stack.enter_context(bench_all.process(cmd, env, out / f"{side}.log"))
                urls[side] = f"http://127.0.0.1:{port}"
            for side, url in urls.items():
                bench_all.wait_http(url + "/v1/ping")
                wait_started(out / f"{side}.log", args.server_workers)
            runs.update({side: [] for side in urls})
            for rnd in range(args.rounds):
                order = list(urls.items())
                if rnd % 2:
                    order.reverse()
                for side, url in order:
                    cfg = loadgen.Config(
                        target=url,
                        scenario="ping",
                        processes=args.load_processes,
                        connections=args.connections,
                        duration=args.duration,
                        seed_stock=False,
                        label=side,
                    )
                    before = os.getloadavg()[0]
                    report = loadgen.run(cfg)
                    report["load"] = (before, os.getloadavg()[0])
                    runs[side].append(report)
                    print(
                        f"  r{rnd} {side:7} {report['requests_per_s']:>9,.0f} req/s"
                        f"  p99 {report['latency_ms']['p99']:>7} ms  errors {report['errors']}"
                        f"  load {before:.1f}>{report['load'][1]:.1f}",
                        file=sys.stderr,
                    )
        finally:
            for env in bases.values():
                bench_all.drop_prefix(args.redis_url, env["INVENTORY_REDIS_PREFIX"])
            for db in dbs:
                drop_database(args.database_url, db)

    rows = []
    verdict = True
    for side, reports in runs.items():
        rates = [float(r["requests_per_s"]) for r in reports]
        ratios = [
            rate / float(bare["requests_per_s"])
            for rate, bare in zip(rates, runs["bare"], strict=True)
        ]
        loads = [x for r in reports for x in r["load"]]
        errors = sum(int(r["errors"]) for r in reports)
        ratio = statistics.median(ratios)
        if side == "ours":
            verdict = ratio >= args.target
        rows.append(
            [
                side,
                f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
                f"{ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                " / ".join(f"{r:.2f}" for r in ratios),
                f"{min(loads):.1f}-{max(loads):.1f}",
                errors,
            ]
        )
    print(
        markdown_table(
            ["side", "req/s, median (min-max)", "÷ bare", "per round", "load avg", "errors"], rows
        )
    )
    print(
        f"ours ÷ bare ≥ {args.target:g}: {'met' if verdict else 'MISSED'}"
        f" ({args.rounds} rounds of {args.duration:g} s, {args.server_workers} server workers,"
        f" {args.load_processes}x{args.connections} connections)"
    )
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
