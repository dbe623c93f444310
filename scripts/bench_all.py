#!/usr/bin/env python
"""Reproduce BENCHMARKS.md in one command (about 15 minutes on the 2-core machine).

    .venv/bin/python scripts/bench_all.py --write

1. Starts, on loopback ports, the service (`inventory_cache.api.main:app_from_env`), the
   PostgreSQL baseline (`scripts/baseline/`, `baseline.app:create_app_from_env`) and the
   hand-rolled one-EVALSHA app (`scripts/evalsha_app.py`) with the same uvicorn command
   line (workers, uvloop, httptools, no access log), on scratch databases and prefixes;
   the service also runs its write-behind worker, so it pays for its ledger as the
   PostgreSQL baseline does.
2. Runs `scripts/loadgen.py` scenarios against each, in the same run: the trivial route
   (the ceiling), availability, a hot-SKU flash sale (checked for oversell), checkout,
   and the mixed workload at peak and at half of its own peak, then ours again at the
   baseline's half of peak, the one offered load both sides meet (the hand-rolled app
   only serves the first three). Every scenario runs `--rounds` times (default 3), the sides
   alternating and their order reversed every other round; each figure is the median of
   the rounds with their min-max, and the 1-minute load average around each row. Each
   run also records where the machine's CPU went per request (each API, the worker,
   PostgreSQL, Redis, the load generator: `cpu_table`), which says what bounds a ratio
   of two rates on full cores.
3. Stops the servers and runs `scripts/bench_engine_vs_pg.py` (no HTTP), then the other
   areas' scripts if present: `bench_engine.py`, `bench_writebehind.py`, `bench_cluster.py`
   and any later `bench_*.py` with its defaults, except those that run on their own
   (`ON_THEIR_OWN`: the abuse, before-and-after, steady-memory and pressure runs).
4. Prints the tables; with `--write` replaces the `## Machine and commands`, `## HTTP` and
   `## Engine vs PostgreSQL` sections of BENCHMARKS.md (others' sections are kept) and
   saves the summary chart beside it.
5. Exits 1 when a target is missed (each is printed), so a regression fails loudly.

Loopback only; every load step is bounded in time and count. Uses its own Redis prefix and
databases and removes them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import bench_engine_vs_pg
import loadgen
import redis
from benchlib import (
    CpuSplit,
    drop_database,
    free_port,
    group_cpu_seconds,
    markdown_table,
    named_cpu_seconds,
    own_cpu_seconds,
    recreate_database,
    require_loopback,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
BIN = Path(sys.executable).parent
MY_SECTIONS = ("Machine and commands", "HTTP", "Engine vs PostgreSQL")
OTHER_BENCHES = ("bench_engine.py", "bench_writebehind.py", "bench_cluster.py")
# Scripts that do not fit a run of the others with their defaults: each updates its own
# section of BENCHMARKS.md when run on its own, as its docstring says.
ON_THEIR_OWN = {
    "bench_abuse.py": "one attack after another, about 5 min",
    "bench_before_after.py": "an older commit against this checkout, about 10 min",
    "bench_memory_steady.py": "a 5-minute steady load",
    "bench_pressure.py": "one run per `--scenario`",
}
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]


def wait_for_quiet(threshold: float, limit: float) -> None:
    """The machine is shared: start when other work has calmed down, if it does soon."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] > threshold and time.monotonic() < deadline:
        print(
            f"load average {os.getloadavg()[0]:.1f}: waiting for < {threshold:g}", file=sys.stderr
        )
        time.sleep(10)


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up in {timeout:g} s")
        time.sleep(0.3)


@contextmanager
def process(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A background process in its own process group, stopped (the whole group) on exit."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def uvicorn_cmd(factory: str, port: int, workers: int) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *UVICORN_FLAGS,
    ]


def cli(env: dict[str, str], *args: str) -> str:
    """Run an `inventory-cache` command as an operator would; its standard output."""
    done = subprocess.run(
        [str(BIN / "inventory-cache"), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return done.stdout.strip()


def prepare_ours(env: dict[str, str], *, admin: bool = False) -> str:
    """Migrate the scratch database, warm the (empty) Redis prefix up, create a key (with
    the admin scope too when the run sets a per-customer limit)."""
    cli(env, "migrate")
    cli(env, "warmup")
    return cli(env, "keys", "create", "--scopes", "read,checkout,warehouse" + ",admin" * admin)


def drop_prefix(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
        for i in range(0, len(keys), 5000):
            client.unlink(*keys[i : i + 5000])


HANDROLLED_SCENARIOS = ("ping", "availability", "flash-sale")


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several rounds: the median of each figure, its spread (min, max),
    errors summed, oversell the worst seen, and the load average around the rounds."""

    def med(f: Any) -> float:
        return float(statistics.median(f(r) for r in reports))

    def spread(f: Any) -> tuple[float, float]:
        xs = [float(f(r)) for r in reports]
        return (min(xs), max(xs))

    out = dict(reports[-1])
    out["rounds"] = len(reports)
    out["requests_per_s"] = med(lambda r: r["requests_per_s"])
    out["ops_per_s"] = med(lambda r: r["ops_per_s"])
    out["latency_ms"] = {q: med(lambda r, q=q: r["latency_ms"][q]) for q in ("p50", "p95", "p99")}
    out["errors"] = sum(int(r["errors"]) for r in reports)
    out["spread"] = {
        "requests_per_s": spread(lambda r: r["requests_per_s"]),
        "p99": spread(lambda r: r["latency_ms"]["p99"]),
    }
    out["load"] = (min(r["load"][0] for r in reports), max(r["load"][1] for r in reports))
    out["per_round"] = {
        "requests_per_s": [float(r["requests_per_s"]) for r in reports],
        "ops_per_s": [float(r["ops_per_s"]) for r in reports],
    }
    if "cpu_us_per_request" in out:
        out["cpu_us_per_request"] = {
            part: med(lambda r, part=part: r["cpu_us_per_request"][part])
            for part in out["cpu_us_per_request"]
        }
    if "flash_sale" in out:
        out["per_round"]["sold_per_s"] = [float(r["flash_sale"]["sold_per_s"]) for r in reports]
        fs = dict(out["flash_sale"])
        fs["sold_per_s"] = med(lambda r: r["flash_sale"]["sold_per_s"])
        fs["oversold"] = max(r["flash_sale"]["oversold"] for r in reports)
        fs["ok"] = all(r["flash_sale"]["ok"] for r in reports)
        out["spread"]["sold_per_s"] = spread(lambda r: r["flash_sale"]["sold_per_s"])
        out["flash_sale"] = fs
    return out


class HttpSuite:
    """The loadgen scenarios on every side in turn, round after round, one configuration."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # Where the machine's CPU went in each run, per request (`cpu_split`: each side's
        # API as `api:<side>`), recorded beside its rate when set.
        self.split: CpuSplit | None = None

    @property
    def results(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: merged(v) for k, v in self.runs.items()}

    def run(
        self, side: str, url: str, key: str, scenario: str, rnd: int, **kw: Any
    ) -> dict[str, Any]:
        a = self.args
        name = kw.pop("name", scenario)
        cfg = loadgen.Config(
            target=url,
            scenario=scenario,
            processes=a.load_processes,
            connections=a.connections,
            duration=kw.pop("duration", a.duration),
            skus=a.skus,
            api_key=key,
            label=f"{side} {name}",
            **kw,
        )
        before = os.getloadavg()[0]
        split0 = self.split.read() if self.split else None
        report = loadgen.run(cfg, str(self.out / f"{side}-{name}-{rnd}.png"))
        report["load"] = (before, os.getloadavg()[0])
        if self.split and split0 and report["requests"]:
            report["cpu_us_per_request"] = CpuSplit.per_request(
                split0, self.split.read(), report["requests"]
            )
        (self.out / f"{side}-{name}-{rnd}.json").write_text(json.dumps(report, indent=2))
        fs = report.get("flash_sale", {})
        print(
            f"  r{rnd} {side:10} {name:12} {report['requests_per_s']:>9,.0f} req/s"
            f"  p50 {report['latency_ms']['p50']:>7} p99 {report['latency_ms']['p99']:>8} ms"
            f"  errors {report['errors']}  load {report['load'][0]:.1f}>{report['load'][1]:.1f}"
            + (f"  sold/s {fs['sold_per_s']:,} oversold {fs['oversold']}" if fs else ""),
            file=sys.stderr,
        )
        self.runs.setdefault((side, name), []).append(report)
        return report

    def both(self, sides: dict[str, tuple[str, str]], rounds: int) -> None:
        """Every scenario on each side in turn (`sides`: name → (url, API key)), `rounds`
        times, the order of the sides reversed every other round, so that the machine's
        drift falls on every side alike. The hand-rolled app runs only the scenarios it
        serves (`HANDROLLED_SCENARIOS`)."""
        a = self.args
        for rnd in range(rounds):
            order = list(sides.items())
            if rnd % 2:
                order.reverse()
            flash = f"FS{uuid.uuid4().hex[:6]}"
            steps: list[tuple[str, dict[str, Any]]] = [
                ("ping", {"seed_stock": False}),
                ("availability", {"seed_stock": rnd == 0}),  # later scenarios reuse it
                (
                    "flash-sale",
                    {
                        "units": a.units,
                        "buyers": 2 * a.units,
                        "sku_prefix": flash,
                        "duration": a.flash_duration,
                    },
                ),
                ("checkout", {"seed_stock": False}),
                ("mixed", {"seed_stock": False}),
            ]
            if a.limit:
                # The same sale with a per-customer limit that binds: half as many customers
                # as units, each trying 3 times (the third try of a customer who got two is
                # refused by the limit); only ours has limits.
                steps.insert(
                    3,
                    (
                        "flash-sale",
                        {
                            "name": "flash-sale-limit",
                            "units": a.units,
                            "buyers": max(1, a.units // 2),
                            "tries": 3,
                            "limit": a.limit,
                            "sku_prefix": f"{flash}L",
                            "duration": a.flash_duration,
                        },
                    ),
                )
            for scenario, kw in steps:
                for side, (url, key) in order:
                    if side == "handrolled" and scenario not in HANDROLLED_SCENARIOS:
                        continue
                    if side != "ours" and kw.get("limit"):
                        continue
                    self.run(side, url, key, scenario, rnd, **kw)
            for side, (url, key) in order:
                if side == "handrolled":
                    continue
                peak = self.runs[(side, "mixed")][-1]["ops_per_s"]
                self.run(
                    side,
                    url,
                    key,
                    "mixed",
                    rnd,
                    seed_stock=False,
                    name="mixed-half",
                    rate=max(1.0, peak / 2),
                )
            if "ours" in sides and "baseline" in sides:
                # The same mix on ours at the rate the baseline was offered at its half of
                # peak: the two p99s at one offered load.
                url, key = sides["ours"]
                rate = self.runs[("baseline", "mixed-half")][-1]["offered_rate"]
                self.run(
                    "ours", url, key, "mixed", rnd, seed_stock=False, name="mixed-equal", rate=rate
                )


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def with_spread(value: float, lo_hi: tuple[float, float]) -> str:
    """`1,234 (1,100-1,300)`: a median and the range of the rounds behind it."""
    return f"{fmt(value)} ({fmt(lo_hi[0])}-{fmt(lo_hi[1])})"


def paired_ratio(a: dict[str, Any], b: dict[str, Any], field: str) -> tuple[float, float, float]:
    """`a ÷ b` as the median of the rounds' own ratios, with their min and max: the two
    runs of a round follow each other, so the machine's drift between rounds, which moves
    both sides, drops out of each round's ratio."""
    xs = [
        x / max(y, 1e-9) for x, y in zip(a["per_round"][field], b["per_round"][field], strict=True)
    ]
    return statistics.median(xs), min(xs), max(xs)


def ratio_cell(paired: tuple[float, float, float]) -> str:
    return f"{paired[0]:.2f}x ({paired[1]:.2f}-{paired[2]:.2f})"


def http_table(r: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, list[tuple[str, bool]]]:
    """The HTTP table (medians of the rounds, with their spread) and each target's verdict."""

    def cell(side: str, name: str) -> str:
        rep = r.get((side, name))
        if rep is None:
            return "-"
        if name.startswith("flash-sale"):
            return with_spread(rep["flash_sale"]["sold_per_s"], rep["spread"]["sold_per_s"])
        return with_spread(rep["requests_per_s"], rep["spread"]["requests_per_s"])

    def p(side: str, name: str) -> str:
        lat = r[(side, name)]["latency_ms"]
        return f"{lat['p50']:.1f} / {lat['p99']:.1f}"

    def load(name: str) -> str:
        reps = [rep for (_, n), rep in r.items() if n == name]
        return f"{min(x['load'][0] for x in reps):.1f}-{max(x['load'][1] for x in reps):.1f}"

    def versus(side: str, other: str, name: str, field: str = "") -> tuple[float, float, float]:
        field = field or ("sold_per_s" if name == "flash-sale" else "requests_per_s")
        return paired_ratio(r[(side, name)], r[(other, name)], field)

    rows = []
    for name, what in (
        ("ping", "`GET /v1/ping` (trivial route: the ceiling)"),
        ("availability", "`GET /v1/availability/{sku}`, Zipf over the catalogue"),
        ("flash-sale", "flash sale, one hot SKU (successful reservations/s)"),
        ("checkout", "checkout: reserve, then ship or cancel (requests/s)"),
        ("mixed", "mixed 95% reads / 5% checkouts, closed loop (peak)"),
        ("mixed-half", "mixed at half of its own peak, open loop"),
    ):
        if name == "checkout" and ("ours", "flash-sale-limit") in r:  # below the flash sale
            fl = r[("ours", "flash-sale-limit")]["flash_sale"]
            rows.append(
                [
                    f"same, {fl['buyers']:,} customers x {fl['tries']} tries, limit"
                    f" {fl['limit']} per customer (ours only; over the limit:"
                    f" {fl['over_limit']})",
                    cell("ours", "flash-sale-limit"),
                    "-",
                    "-",
                    "-",
                    "-",
                    p("ours", "flash-sale-limit"),
                    "-",
                    r[("ours", "flash-sale-limit")]["errors"],
                    load("flash-sale-limit"),
                ]
            )
        hand = r.get(("handrolled", name))
        rows.append(
            [
                what,
                cell("ours", name),
                cell("baseline", name),
                ratio_cell(versus("ours", "baseline", name)),
                cell("handrolled", name),
                ratio_cell(versus("ours", "handrolled", name)) if hand else "-",
                p("ours", name),
                p("baseline", name),
                sum(int(rep["errors"]) for (_, n), rep in r.items() if n == name),
                load(name),
            ]
        )
    if ("ours", "mixed-equal") in r:  # below the half of peak
        rows.append(
            [
                "mixed at the baseline's half of peak (the same offered load; ours only,"
                " the PG columns repeat the baseline's half of peak)",
                cell("ours", "mixed-equal"),
                cell("baseline", "mixed-half"),
                "-",
                "-",
                "-",
                p("ours", "mixed-equal"),
                p("baseline", "mixed-half"),
                r[("ours", "mixed-equal")]["errors"],
                load("mixed-equal"),
            ]
        )
    rounds = r[("ours", "ping")]["rounds"]
    table = markdown_table(
        [
            f"scenario (median of {rounds} rounds, min-max)",
            "ours /s",
            "PG baseline /s",
            "ours / PG (by round: median, min-max)",
            "hand-rolled EVALSHA /s",
            "ours / hand-rolled (by round)",
            "ours p50 / p99 ms",
            "PG p50 / p99 ms",
            "errors",
            "load avg",
        ],
        rows,
    )
    fo = r[("ours", "flash-sale")]["flash_sale"]
    fb = r[("baseline", "flash-sale")]["flash_sale"]
    flash_pg = versus("ours", "baseline", "flash-sale")[0]
    flash_hand = versus("ours", "handrolled", "flash-sale")[0]
    ping = versus("ours", "baseline", "ping")[0]
    avail = paired_ratio(r[("ours", "availability")], r[("ours", "ping")], "requests_per_s")[0]
    mixed = versus("ours", "baseline", "mixed", "ops_per_s")[0]
    p99, p99_pg = (float(r[(s, "mixed-half")]["latency_ms"]["p99"]) for s in ("ours", "baseline"))
    half_rate = r[("ours", "mixed-half")]["offered_rate"]
    verdicts = [
        (
            f"hot-SKU flash sale ≥ 3.0x the PostgreSQL baseline's successful reservations/s:"
            f" {flash_pg:.2f}x; oversold: ours {fo['oversold']}, baseline {fb['oversold']}"
            f" (the stock route agreed: {fo['ok'] and fb['ok']})",
            flash_pg >= 3.0 and fo["oversold"] == 0 and fo["ok"],
        ),
        (
            f"the reservation route ≥ 1.0x the hand-rolled one-EVALSHA app (flash sale,"
            f" sold/s): {flash_hand:.2f}x",
            flash_hand >= 1.0,
        ),
        (f"trivial route ≥ 0.9x the baseline's trivial route: {ping:.2f}x", ping >= 0.9),
        (f"availability ≥ 0.7x the trivial route on the same server: {avail:.2f}x", avail >= 0.7),
        (f"mixed 95/5 at peak ≥ 2x the baseline (ops/s): {mixed:.2f}x", mixed >= 2.0),
        (
            f"mixed p99 at half of peak ({half_rate:,.0f} ops/s offered) < 50 ms and below the"
            f" baseline's: {p99:g} ms vs {p99_pg:g} ms",
            p99 < 50 and p99 < p99_pg,
        ),
    ]
    return table, verdicts


SIDES = (("ours", "ours"), ("baseline", "PG baseline"), ("handrolled", "hand-rolled"))
# The parts of `HttpSuite.split` besides each side's API (`api:<side>`), as the table names them.
CPU_PARTS = (
    ("worker", "worker"),
    ("postgres", "PostgreSQL"),
    ("redis", "Redis"),
    ("load", "load generator"),
)


def cpu_split(api_groups: dict[str, int], worker_group: int, client: Any) -> CpuSplit:
    """The parts `cpu_table` shows: each side's API and the worker (process groups: each
    was started in a session of its own), every PostgreSQL process, Redis (`INFO cpu`)
    and the load generator (this process and its finished children)."""

    def redis_cpu() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    return CpuSplit(
        {
            **{f"api:{side}": partial(group_cpu_seconds, g) for side, g in api_groups.items()},
            "worker": partial(group_cpu_seconds, worker_group),
            "postgres": partial(named_cpu_seconds, "postgres"),
            "redis": redis_cpu,
            "load": own_cpu_seconds,
        }
    )


def cpu_table(r: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Where the machine's CPU went per request in the flash sale (every side) and the mixed
    load at peak: each side's own API, then the shared parts; the other sides' idle APIs
    count in `other`. Under the table, what the flash sale's split bounds: on full cores a
    rate is the cores over the CPU a request costs, so the hand-rolled app's total over
    ours is about the ratio of their rates, and replacing our API's part by the
    hand-rolled app's says what the ratio could be if our API cost no more than it."""
    rows: list[list[str]] = []
    for name, label in (("flash-sale", "flash sale"), ("mixed", "mixed at peak")):
        for side, who in SIDES:
            rep = r.get((side, name))
            if rep is None or "cpu_us_per_request" not in rep:
                continue
            cpu = rep["cpu_us_per_request"]
            idle = sum(v for k, v in cpu.items() if k.startswith("api:") and k != f"api:{side}")
            rows.append(
                [
                    label,
                    who,
                    fmt(cpu.get(f"api:{side}", 0.0)),
                    *(fmt(cpu.get(part, 0.0)) for part, _ in CPU_PARTS),
                    fmt(cpu["other"] + idle),
                    fmt(cpu["total"]),
                ]
            )
    if not rows:
        return ""
    table = markdown_table(
        [
            "scenario",
            "side",
            "its API",
            *(title for _, title in CPU_PARTS),
            "other",
            "total (machine)",
        ],
        rows,
    )
    ours, hand = r.get(("ours", "flash-sale")), r.get(("handrolled", "flash-sale"))
    if not (ours and hand and "cpu_us_per_request" in ours and "cpu_us_per_request" in hand):
        return table
    o, h = ours["cpu_us_per_request"], hand["cpu_us_per_request"]
    with_their_api = o["total"] - o["api:ours"] + h["api:handrolled"]
    measured = paired_ratio(ours, hand, "requests_per_s")[0]
    return (
        f"{table}\n\nIn the flash sale the hand-rolled app's requests cost the machine"
        f" {fmt(h['total'])} µs of CPU each and ours {fmt(o['total'])} µs:"
        f" {h['total'] / o['total']:.2f}x, where their request rates gave {measured:.2f}x. With"
        f" our API no dearer than the hand-rolled app's ({fmt(h['api:handrolled'])} µs a request"
        f" against {fmt(o['api:ours'])}), ours would still cost {fmt(with_their_api)} µs:"
        f" about {h['total'] / with_their_api:.2f}x of its rate on this machine."
    )


def verdict_lines(verdicts: list[tuple[str, bool]]) -> str:
    return "\n".join(f"- {text}: {'met' if ok else '**missed**'}" for text, ok in verdicts)


def engine_table(report: dict[str, Any]) -> tuple[str, list[tuple[str, bool]]]:
    by = {(row["scenario"], row["side"]): row for row in report["rows"]}
    rows: list[list[Any]] = []
    verdicts: list[tuple[str, bool]] = []
    for scenario in ("hot", "spread"):
        ours = by[(scenario, "engine")]["reservations_per_s"]
        pg = by[(scenario, "pg")]["reservations_per_s"]
        pga = by[(scenario, "pg-async-commit")]["reservations_per_s"]
        rows.append(
            [
                "one hot SKU"
                if scenario == "hot"
                else f"{report['config']['skus']:,} SKUs, uniform",
                fmt(ours),
                fmt(pg),
                f"{ours / max(pg, 1):.1f}x",
                fmt(pga),
                f"{ours / max(pga, 1):.1f}x",
                f"{by[(scenario, 'engine')]['p99']} / {by[(scenario, 'pg')]['p99']}",
            ]
        )
        if scenario == "hot":
            hot = ours / max(pg, 1)
            verdicts.append(
                (f"hot-SKU reservations ≥ 15x the baseline at engine level: {hot:.1f}x", hot >= 15)
            )
    table = markdown_table(
        [
            "reservations of one unit",
            "StockEngine /s",
            "PG baseline /s",
            "ratio",
            "PG, synchronous_commit=off /s",
            "ratio",
            "p99 ms ours / PG",
        ],
        rows,
    )
    return table, verdicts


def summary_chart(r: dict[tuple[str, str], dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["ping", "availability", "flash-sale", "checkout", "mixed"]

    def value(side: str, name: str) -> float:
        rep = r[(side, name)]
        return float(
            rep["flash_sale"]["sold_per_s"] if name == "flash-sale" else rep["requests_per_s"]
        )

    fig, ax = plt.subplots(figsize=(9, 4))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [value("ours", n) for n in names], 0.4, label="ours")
    ax.bar(
        [x + 0.2 for x in xs],
        [value("baseline", n) for n in names],
        0.4,
        label="PostgreSQL baseline",
    )
    ax.set_xticks(
        list(xs), ["ping\n(ceiling)", "availability", "flash sale\n(sold/s)", "checkout", "mixed"]
    )
    ax.set_ylabel("per second")
    ax.legend()
    ax.set_title("Same uvicorn configuration, same load generator, one run")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine(args: argparse.Namespace) -> str:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    redis_v = out(["redis-server", "--version"]).split(" v=")[-1].split()[0] or "?"
    pg_found = re.search(r"\d+\.\d+", out(["psql", "--version"])) if shutil.which("psql") else None
    pg_v = pg_found.group(0) if pg_found else "?"
    commit = out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return "\n".join(
        [
            f"- {os.cpu_count()} cores ({cpu}), {mem_kb // 1024 // 1024} GiB RAM,"
            f" {platform.system()} {platform.release()}; load average at start"
            f" {os.getloadavg()[0]:.1f} (the machine is shared: compare ratios, not absolutes)",
            f"- Python {platform.python_version()}, Redis {redis_v}, PostgreSQL {pg_v}"
            f" (fsync on, synchronous_commit on unless stated), commit `{commit}`,"
            f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- servers: `uvicorn --factory <app> --workers {args.server_workers}"
            f" {' '.join(UVICORN_FLAGS)}` for both; the baseline's pool is"
            f" {args.pg_pool} connections per worker",
            f"- load: `scripts/loadgen.py`, {args.load_processes} processes x"
            f" {args.connections} keep-alive connections, {args.duration:g} s per scenario,"
            f" {args.skus:,} SKUs (Zipf s=1.1); same machine as the servers",
            "- reproduce everything: `.venv/bin/python scripts/bench_all.py --write`"
            " (needs Redis and PostgreSQL on 127.0.0.1)",
        ]
    )


def replace_sections(text: str, sections: dict[str, str]) -> str:
    """Replace (or append) `## <title>` sections; every other section is kept as it was.

    A replaced section keeps its `### Notes` subsection, if any: the hand-written reading
    of the figures (why a target is missed, what would close it) survives a re-run.
    """
    parts = [p.rstrip() + "\n\n" for p in re.split(r"(?m)^(?=## )", text)]
    head, body = parts[0], parts[1:]
    seen = set()
    for i, part in enumerate(body):
        title = part.splitlines()[0][3:].strip()
        if title in sections:
            notes = re.search(r"(?ms)^### Notes\b.*", part)
            kept = f"\n\n{notes.group(0).strip()}" if notes else ""
            body[i] = f"## {title}\n\n{sections[title].strip()}{kept}\n\n"
            seen.add(title)
    for title, content in sections.items():
        if title not in seen:
            body.append(f"## {title}\n\n{content.strip()}\n\n")
    return (head + "".join(body)).rstrip() + "\n"


def other_benches() -> list[Path]:
    """The other areas' bench scripts: the known ones first, then any later `bench_*.py`."""
    found = [SCRIPTS / n for n in OTHER_BENCHES if (SCRIPTS / n).exists()]
    mine = {"bench_all.py", "bench_engine_vs_pg.py", *OTHER_BENCHES, *ON_THEIR_OWN}
    return found + sorted(p for p in SCRIPTS.glob("bench_*.py") if p.name not in mine)


def run_others(out: Path, each: float, until: float) -> list[str]:
    """Run each script (default arguments) within `each` seconds and the overall `until`
    (a monotonic deadline). Their figures are printed and kept beside the reports; their
    sections of BENCHMARKS.md are their owners' to update."""
    notes = [
        f"- `scripts/{n}`: not present in this checkout"
        for n in OTHER_BENCHES
        if not (SCRIPTS / n).exists()
    ] + [
        f"- `scripts/{n}`: not run here ({why}); run it on its own"
        for n, why in ON_THEIR_OWN.items()
    ]
    for path in other_benches():
        timeout = min(each, until - time.monotonic())
        if timeout < 10:
            notes.append(f"- `scripts/{path.name}`: skipped, the 10-minute budget was spent")
            continue
        print(f"running scripts/{path.name}", file=sys.stderr)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            notes.append(f"- `scripts/{path.name}`: stopped after {timeout:.0f} s")
            continue
        log = out / f"{path.stem}.txt"
        log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        print(done.stdout, file=sys.stderr)
        notes.append(
            f"- `scripts/{path.name}`: exit {done.returncode} in"
            f" {time.monotonic() - started:.0f} s, output in `{log}`"
        )
    return notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an existing database; scratch databases are created beside it",
    )
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--pg-pool", type=int, default=8)
    p.add_argument("--load-processes", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--flash-duration", type=float, default=10.0)
    p.add_argument("--units", type=int, default=2000)
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        help="also run the flash sale with this per-customer limit (as many customers as "
        "units, 3 tries each; ours only)",
    )
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--engine-duration", type=float, default=3.0, help="seconds per round")
    p.add_argument("--engine-rounds", type=int, default=3)
    p.add_argument(
        "--quiet-load",
        type=float,
        default=1.0,
        help="wait for the 1-minute load average to fall below this first",
    )
    p.add_argument("--quiet-wait", type=float, default=120.0, help="but no longer than this")
    p.add_argument("--others-timeout", type=float, default=150.0)
    p.add_argument("--skip-others", action="store_true")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of every scenario")
    p.add_argument("--budget", type=float, default=1200.0, help="seconds for the whole run")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "inventory-cache-bench"))
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = p.parse_args(argv)
    require_loopback(args.redis_url)
    require_loopback(args.database_url)
    wait_for_quiet(args.quiet_load, args.quiet_wait)
    started = time.monotonic()
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    ours_db, base_db = f"bench_ours_{run}", f"bench_baseline_{run}"
    prefix = f"bench{run}"
    machine_text = machine(args)
    env = dict(os.environ)
    env.update(
        {
            "INVENTORY_REDIS_URL": args.redis_url,
            "INVENTORY_REDIS_PREFIX": prefix,
            "INVENTORY_DATABASE_URL": recreate_database(args.database_url, ours_db),
            "INVENTORY_LOCATION_PRIORITY": "north",
            "INVENTORY_BASELINE_DATABASE_URL": recreate_database(args.database_url, base_db),
            "INVENTORY_BASELINE_LOCATION_PRIORITY": "north",
            "INVENTORY_BASELINE_POOL_SIZE": str(args.pg_pool),
            "EVALSHA_APP_REDIS_URL": args.redis_url,
            "EVALSHA_APP_PREFIX": f"{prefix}hand",
        }
    )
    suite = HttpSuite(args, out)
    try:
        key = prepare_ours(env, admin=bool(args.limit))
        ours_port, base_port, hand_port = free_port(), free_port(), free_port()
        with (
            process(
                uvicorn_cmd(
                    "inventory_cache.api.main:app_from_env", ours_port, args.server_workers
                ),
                env,
                out / "ours.log",
            ) as ours_api,
            process(
                [
                    *uvicorn_cmd(
                        "baseline.app:create_app_from_env", base_port, args.server_workers
                    ),
                    "--app-dir",
                    str(SCRIPTS),
                ],
                env,
                out / "baseline.log",
            ) as base_api,
            process(
                [
                    *uvicorn_cmd("evalsha_app:create_app_from_env", hand_port, args.server_workers),
                    "--app-dir",
                    str(SCRIPTS),
                ],
                env,
                out / "handrolled.log",
            ) as hand_api,
            process([str(BIN / "inventory-cache"), "worker"], env, out / "worker.log") as worker,
            redis.Redis.from_url(args.redis_url) as redis_client,
        ):
            suite.split = cpu_split(
                {"ours": ours_api.pid, "baseline": base_api.pid, "handrolled": hand_api.pid},
                worker.pid,
                redis_client,
            )
            urls = {
                side: f"http://127.0.0.1:{port}"
                for side, port in (
                    ("ours", ours_port),
                    ("baseline", base_port),
                    ("handrolled", hand_port),
                )
            }
            for url in urls.values():
                wait_http(url + "/v1/ping")
            print("HTTP scenarios", file=sys.stderr)
            suite.both(
                {
                    "ours": (urls["ours"], key),
                    "baseline": (urls["baseline"], ""),
                    "handrolled": (urls["handrolled"], ""),
                },
                args.rounds,
            )
    finally:
        drop_prefix(args.redis_url, prefix)
        drop_prefix(args.redis_url, f"{prefix}hand")
        drop_database(args.database_url, ours_db)
        drop_database(args.database_url, base_db)

    print("engine vs PostgreSQL (no HTTP)", file=sys.stderr)
    engine_report = bench_engine_vs_pg.main(
        [
            "--redis-url",
            args.redis_url,
            "--database-url",
            args.database_url,
            "--processes",
            str(args.server_workers),
            "--duration",
            str(args.engine_duration),
            "--rounds",
            str(args.engine_rounds),
            "--pg-pool",
            str(args.pg_pool),
            "--json",
            str(out / "engine_vs_pg.json"),
        ]
    )
    until = started + args.budget
    others = [] if args.skip_others else run_others(out, args.others_timeout, until)

    http_md, http_verdicts = http_table(suite.results)
    cpu_md = cpu_table(suite.results)
    eng_md, eng_verdicts = engine_table(engine_report)
    summary_chart(suite.results, out / "http-summary.png")
    took = time.monotonic() - started
    cfg = engine_report["config"]
    sections = {
        "Machine and commands": machine_text
        + f"\n- this run took {took / 60:.1f} min; raw reports and charts in `{out}`"
        + ("\n" + "\n".join(others) if others else ""),
        "HTTP": "The service runs with its write-behind worker (`inventory-cache worker`)"
        " beside the API, so both sides pay for their ledger."
        f" The hand-rolled app (`scripts/evalsha_app.py`) runs one EVALSHA per reservation and"
        " nothing else: no keys, idempotency, order index or ledger. A ratio is the median of"
        " the rounds' own ratios (the sides of a round run back to back), min-max beside it."
        f"\n\n{http_md}\n\nTargets:\n\n"
        + verdict_lines(http_verdicts)
        + (f"\n\nCPU per request, µs (median of the rounds):\n\n{cpu_md}" if cpu_md else "")
        + "\n\n![HTTP, ours vs the PostgreSQL baseline](benchmarks/http-summary.png)",
        "Engine vs PostgreSQL": (
            f"No HTTP: {cfg['processes']} processes x {cfg['concurrency']} concurrent tasks"
            f" on both sides, one unit per order; median of {cfg['rounds']} alternating"
            f" rounds of {cfg['duration']:g} s (after {cfg['warmup']:g} s of warm-up);"
            f" the baseline's pool is {cfg['pg_pool']} connections per process"
            f" (`scripts/bench_engine_vs_pg.py`).\n\n{eng_md}\n\nTargets:\n\n"
            + verdict_lines(eng_verdicts)
        ),
    }
    for title in MY_SECTIONS:
        print(f"\n## {title}\n\n{sections[title]}")
    if args.write:
        doc = ROOT / "BENCHMARKS.md"
        text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
        doc.write_text(replace_sections(text, sections))
        (ROOT / "benchmarks").mkdir(exist_ok=True)
        shutil.copy(out / "http-summary.png", ROOT / "benchmarks" / "http-summary.png")
        print(f"\nupdated {doc}", file=sys.stderr)
    print(f"bench_all took {took:.0f} s", file=sys.stderr)
    missed = [text for text, ok in http_verdicts + eng_verdicts if not ok]
    for text in missed:
        print(f"target missed: {text}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
