#!/usr/bin/env python
"""Did a change slow the happy path? The same benchmarks on an older commit and on this
checkout, alternating, in one run.

    .venv/bin/python scripts/bench_before_after.py --before cab592f --write

A feature that adds a check to every request (the ledger marks, the key mirror, the
console's routes) promises "no slower than before"; only a comparison measured side by
side on this noisy 2-core machine can show it. This script

1. checks the older commit out into a temporary git worktree and runs its code from there
   (`PYTHONPATH` puts that tree before the installed package; same virtualenv, so same
   libraries), each side on its own Redis prefix and scratch database, each with its own
   write-behind worker beside its API (`uvicorn --workers 2`, the command of
   `bench_all.py`);
2. runs `bench_all.py`'s HTTP scenarios on both sides, alternating, `--rounds` times;
3. runs `scripts/bench_engine.py` and `scripts/bench_writebehind.py` of each tree in turn,
   alternating, `--rounds` times;
4. prints one table (medians with min-max, after ÷ before, load average) and the verdict
   "within 5%" per row; with `--write` replaces the `## Before and after` section of
   BENCHMARKS.md. Exits 1 when a row is more than 5% slower.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import bench_all
from benchlib import (
    CpuSplit,
    drop_database,
    free_port,
    group_cpu_seconds,
    markdown_table,
    recreate_database,
    require_loopback,
)

ROOT = bench_all.ROOT
TOLERANCE = 0.05
CLI = (
    "import sys; from inventory_cache.cli import app;"
    " app(args=sys.argv[1:], prog_name='inventory-cache')"
)


def side_env(
    base: dict[str, str], tree: Path, redis_url: str, db_url: str, prefix: str
) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "PYTHONPATH": str(tree),
            "INVENTORY_REDIS_URL": redis_url,
            "INVENTORY_REDIS_PREFIX": prefix,
            "INVENTORY_DATABASE_URL": db_url,
            "INVENTORY_LOCATION_PRIORITY": "north",
        }
    )
    return env


def cli(env: dict[str, str], tree: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    )
    return done.stdout.strip()


def start_side(
    stack: ExitStack, tree: Path, env: dict[str, str], port: int, out: Path, side: str
) -> tuple[str, int]:
    """The side's API (`uvicorn --workers 2`) and write-behind worker; its URL and the
    API's process group (uvicorn and its workers).

    Both start in `tree`: uvicorn puts its app dir (the working directory) before
    `PYTHONPATH`, and `python -c` the working directory, so started from this checkout
    the older side would run this checkout's code against its own schema.
    """
    api = bench_all.uvicorn_cmd("inventory_cache.api.main:app_from_env", port, 2)
    server = stack.enter_context(bench_all.process(api, env, out / f"{side}.log", cwd=tree))
    worker = [sys.executable, "-c", CLI, "worker"]
    stack.enter_context(bench_all.process(worker, env, out / f"{side}-worker.log", cwd=tree))
    return f"http://127.0.0.1:{port}", server.pid


def engine_rows(stdout: str) -> dict[str, float]:
    """`bench_engine.py`'s Markdown table: engine calls/s by (op, SKUs, tasks), and the
    engine's client CPU per call where the table has it."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[\d,]+", cells[3]) and cells[2].isdigit():
            row = f"engine {cells[0]}, {cells[1]} SKUs, {cells[2]} tasks"
            rows[f"{row} (calls/s)"] = float(cells[3].replace(",", ""))
            cpu = re.fullmatch(r"(\d+) / \d+", cells[-1])
            if len(cells) >= 9 and cpu:
                rows[f"{row}, client CPU (µs/call, lower is better)"] = float(cpu.group(1))
    return rows


def run_script(tree: Path, name: str, args: list[str], out: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, str(tree / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=tree,
        timeout=600,
    )
    out.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode not in (0, 1):  # 1: the script's own target missed, figures still valid
        raise SystemExit(f"{tree / 'scripts' / name} failed ({done.returncode}); see {out}")
    return done.stdout


def library_rounds(
    trees: dict[str, Path], args: argparse.Namespace, out: Path
) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    """(value, load before, load after) per side and row, the sides alternating."""
    figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {s: {} for s in trees}
    for rnd in range(args.rounds):
        order = list(trees.items())
        if rnd % 2:
            order.reverse()
        for side, tree in order:
            load0 = os.getloadavg()[0]
            text = run_script(
                tree,
                "bench_engine.py",
                ["--url", args.redis_url, "--seconds", str(args.engine_seconds), "--slices", "2"],
                out / f"{side}-engine-{rnd}.txt",
            )
            load1 = os.getloadavg()[0]
            for row, value in engine_rows(text).items():
                figures[side].setdefault(row, []).append((value, load0, load1))
            print(f"  r{rnd} {side:6} engine rows: {len(engine_rows(text))}", file=sys.stderr)
        for side, tree in order:
            load0 = os.getloadavg()[0]
            report = out / f"{side}-writebehind-{rnd}.json"
            run_script(
                tree,
                "bench_writebehind.py",
                [
                    "--redis-url",
                    args.redis_url,
                    "--database-url",
                    args.database_url,
                    "--workers",
                    "1",
                    "--events",
                    str(args.events),
                    "--duration",
                    str(args.writebehind_seconds),
                    "--json",
                    str(report),
                ],
                out / f"{side}-writebehind-{rnd}.txt",
            )
            load1 = os.getloadavg()[0]
            result = json.loads(report.read_text())[0]
            row = "write-behind, one worker (flushed events/s)"
            figures[side].setdefault(row, []).append(
                (float(result["flushed_events_per_s"]), load0, load1)
            )
            if "worker_cpu_us_per_event" in result:
                cpu = "write-behind, worker CPU per event (µs, lower is better)"
                figures[side].setdefault(cpu, []).append(
                    (float(result["worker_cpu_us_per_event"]), load0, load1)
                )
            print(
                f"  r{rnd} {side:6} write-behind {result['flushed_events_per_s']} events/s",
                file=sys.stderr,
            )
    return figures


def http_rounds(
    trees: dict[str, Path], args: argparse.Namespace, out: Path
) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    run = uuid.uuid4().hex[:8]
    suite = bench_all.HttpSuite(
        argparse.Namespace(
            load_processes=2,
            connections=32,
            duration=args.duration,
            skus=1000,
            units=2000,
            flash_duration=args.duration + 4,
            limit=0,
        ),
        out,
    )
    sides: dict[str, tuple[str, str]] = {}
    groups: dict[str, int] = {}  # `api:<side>`: the process group of that side's API
    with ExitStack() as stack:
        for side, tree in trees.items():
            db = f"bench_{side}_{run}"
            prefix = f"bench{side}{run}"
            stack.callback(drop_database, args.database_url, db)
            stack.callback(bench_all.drop_prefix, args.redis_url, prefix)
            env = side_env(
                dict(os.environ),
                tree,
                args.redis_url,
                recreate_database(args.database_url, db),
                prefix,
            )
            cli(env, tree, "migrate")
            cli(env, tree, "warmup")
            key = cli(env, tree, "keys", "create", "--scopes", "read,checkout,warehouse")
            url, groups[f"api:{side}"] = start_side(stack, tree, env, free_port(), out, side)
            sides[side] = (url, key)
        suite.split = CpuSplit({api: partial(group_cpu_seconds, g) for api, g in groups.items()})
        for url, _ in sides.values():
            bench_all.wait_http(url + "/v1/ping")
        suite.both(sides, args.rounds)
    figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {s: {} for s in trees}
    for (side, name), reports in suite.runs.items():
        for rep in reports:
            value = (
                rep["flash_sale"]["sold_per_s"] if name == "flash-sale" else rep["requests_per_s"]
            )
            label = {
                "flash-sale": "HTTP flash sale (sold/s)",
                "mixed-half": "HTTP mixed at half of peak (req/s)",
            }.get(name, f"HTTP {name} (req/s)")
            figures[side].setdefault(label, []).append((float(value), *rep["load"]))
            if "cpu_us_per_request" in rep:
                cpu = f"HTTP {name}, API CPU per request (µs, lower is better)"
                figures[side].setdefault(cpu, []).append(
                    (float(rep["cpu_us_per_request"][f"api:{side}"]), *rep["load"])
                )
            if name in ("checkout", "mixed-half"):
                p99 = f"HTTP {name} p99 (ms, lower is better)"
                figures[side].setdefault(p99, []).append(
                    (float(rep["latency_ms"]["p99"]), *rep["load"])
                )
    return figures


def table(
    figures: dict[str, dict[str, list[tuple[float, float, float]]]], before: str
) -> tuple[str, list[str]]:
    rows, slower = [], []
    for row in figures["before"]:
        if row not in figures["after"]:
            continue
        b = [v for v, _, _ in figures["before"][row]]
        a = [v for v, _, _ in figures["after"][row]]
        loads = [x for side in figures.values() for v in side[row] for x in v[1:]]
        mb, ma = statistics.median(b), statistics.median(a)
        lower_better = "lower is better" in row
        change = (mb / ma if lower_better else ma / mb) if mb and ma else 0.0
        ok = change >= 1 - TOLERANCE
        if not ok:
            slower.append(row)
        rows.append(
            [
                row,
                f"{mb:,.1f} ({min(b):,.1f}-{max(b):,.1f})",
                f"{ma:,.1f} ({min(a):,.1f}-{max(a):,.1f})",
                f"{ma / mb:.3f}" if mb else "-",
                "within 5%" if ok else "**slower**",
                f"{min(loads):.1f}-{max(loads):.1f}",
            ]
        )
    rounds = len(next(iter(figures["after"].values())))
    head = [
        f"figure (median of {rounds} rounds, min-max)",
        f"before (`{before}`)",
        "after (this commit)",
        "after / before",
        "verdict",
        "load avg",
    ]
    return markdown_table(head, rows), slower


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="cab592f", help="the older commit")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per HTTP scenario")
    p.add_argument("--engine-seconds", type=float, default=1.5)
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--writebehind-seconds", type=float, default=5.0)
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-library", action="store_true", help="HTTP rows only")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "inventory-cache-bench"))
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = p.parse_args(argv)
    require_loopback(args.redis_url)
    require_loopback(args.database_url)
    out = Path(args.out) / ("before-after-" + time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    started, load_start = time.monotonic(), os.getloadavg()[0]
    old = Path(tempfile.mkdtemp(prefix="inventory-before-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), rev],
        check=True,
        capture_output=True,
    )
    try:
        trees = {"before": old, "after": ROOT}
        figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {s: {} for s in trees}
        if not args.skip_library:
            figures = library_rounds(trees, args, out)
        if not args.skip_http:
            for side, rows in http_rounds(trees, args, out).items():
                figures[side].update(rows)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)])
    md, slower = table(figures, rev)
    took = (time.monotonic() - started) / 60
    section = (
        f"`scripts/bench_before_after.py --before {rev}` on commit `{head}`,"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the older commit's code and"
        f" this one's, alternating, {args.rounds} rounds, same virtualenv, same servers"
        f" (load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end;"
        f" {took:.0f} min). HTTP rows: `uvicorn --workers 2` with its write-behind worker,"
        f" `loadgen.py` 2 x 32 connections, {args.duration:g} s per scenario; engine rows:"
        f" `bench_engine.py --seconds {args.engine_seconds:g} --slices 2`; write-behind:"
        f" `bench_writebehind.py --workers 1 --events {args.events}`. Raw output in `{out}`."
        f"\n\n{md}"
    )
    print(f"\n## Before and after\n\n{section}")
    if args.write:
        doc = ROOT / "BENCHMARKS.md"
        doc.write_text(bench_all.replace_sections(doc.read_text(), {"Before and after": section}))
        print(f"updated {doc}", file=sys.stderr)
    for row in slower:
        print(f"more than 5% slower: {row}", file=sys.stderr)
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
