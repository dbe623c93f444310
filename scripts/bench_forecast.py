#!/usr/bin/env python
"""Forecast bench: accuracy by demand class, an 8-week replenishment simulation, and the
nightly job's time and memory on a real PostgreSQL ledger.

    # accuracy + simulation on the generated history (in memory, no servers)
    .venv/bin/python scripts/bench_forecast.py --skus 1000 --locations 2 --days 730
    # the nightly job: 10,000 series written into a scratch database, then one run
    .venv/bin/python scripts/bench_forecast.py --job --database-url postgresql://... \\
        --skus 5000 --locations 2 --days 364

Accuracy: the last `--holdout` days (56) are held out; every series is forecast from the
days before by the chosen model (`forecast.fit`), by the earlier velocity method (mean of
the last 28 days) and by the seasonal naive (last week repeated). MASE = mean absolute
error over the held-out days the shelf was not empty, divided by the in-sample error of
the weekly naive; the table gives its mean per demand class (as the service classifies).

Simulation: from each series' actual stock at the start of the holdout, eight weeks of
the true demand (what customers wanted, not what the shelf allowed) are played with each
method's suggestions followed daily (an order arrives after the series' lead time), both
at the same 95% service level: forecast-driven (reorder point = forecast over the lead
time + z x backtest rmse x sqrt(lead time); up to that + 14 days of forecast) and
velocity-driven (the same with the 28-day mean and the standard deviation of its daily
sales). Reported: stockout days (days some demand went unmet) and average stock held.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

import benchlib
import gen_sales_history
import numpy as np

from inventory_cache import forecast as F

SERVICE_LEVEL = 0.95
COVER_DAYS = 14
VELOCITY_WINDOW = 28


def mase_table(
    sc: gen_sales_history.Scenario, holdout: int
) -> tuple[dict[str, dict[str, float]], Any, Any]:
    y = np.maximum(sc.sold - sc.returned, 0).astype(float)
    observed = ~sc.stockout
    train, test = y[:, :-holdout], y[:, -holdout:]
    obs_train, obs_test = observed[:, :-holdout], observed[:, -holdout:]
    fitted = F.fit(train, obs_train, h=holdout)
    filled = F.impute(train, obs_train)
    methods = {
        "forecast": fitted.forecast,
        "velocity": F.velocity(filled, holdout, VELOCITY_WINDOW),
        "seasonal_naive": F.seasonal_naive(filled, holdout),
    }
    scale = F.naive_scale(train, obs_train)
    cnt = obs_test.sum(axis=1)
    ok = np.isfinite(scale) & (cnt > 0)
    table: dict[str, dict[str, float]] = {}
    classes = np.array(fitted.demand_class)
    for cls in ("smooth", "erratic", "intermittent", "lumpy"):
        rows = ok & (classes == cls)
        if not rows.any():
            continue
        table[cls] = {"series": int(rows.sum())}
        for name, fc in methods.items():
            mae = np.where(obs_test, np.abs(fc - test), 0).sum(axis=1) / np.maximum(cnt, 1)
            table[cls][name] = round(float(np.mean(mae[rows] / scale[rows])), 3)
    return table, fitted, filled


def simulate(
    sc: gen_sales_history.Scenario, holdout: int, fitted: F.Fitted, filled: Any
) -> dict[str, dict[str, float]]:
    z = NormalDist().inv_cdf(SERVICE_LEVEL)
    n = len(sc.keys)
    lead = sc.lead_time
    demand = sc.demand[:, -holdout:]
    start_stock = sc.close[:, -holdout - 1]
    rate = filled[:, -VELOCITY_WINDOW:].mean(axis=1)
    sd = filled[:, -VELOCITY_WINDOW:].std(axis=1)
    rmse = np.nan_to_num(fitted.rmse, nan=0.0)
    fc = np.concatenate(
        [fitted.forecast, np.repeat(fitted.forecast.mean(axis=1, keepdims=True), 60, axis=1)],
        axis=1,
    )
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(fc, axis=1)], axis=1)
    out: dict[str, dict[str, float]] = {}
    for method in ("forecast", "velocity"):
        on_hand = start_stock.astype(float).copy()
        arrivals = np.zeros((n, holdout + 40))
        on_order = np.zeros(n)
        stockout_days = 0
        stock_sum = 0.0
        for d in range(holdout):
            on_hand += arrivals[:, d]
            on_order -= arrivals[:, d]
            short = demand[:, d] > on_hand
            stockout_days += int(short.sum())
            on_hand = np.maximum(on_hand - demand[:, d], 0)
            stock_sum += float(on_hand.sum())
            if method == "forecast":
                over_lead = cum[np.arange(n), d + lead] - cum[:, d]
                rop = np.ceil(over_lead) + np.ceil(z * rmse * np.sqrt(lead))
                cover = cum[np.arange(n), d + lead + COVER_DAYS] - cum[np.arange(n), d + lead]
                up_to = rop + np.ceil(cover)
            else:
                rop = np.ceil(rate * lead) + np.ceil(z * sd * np.sqrt(lead))
                up_to = rop + np.ceil(rate * COVER_DAYS)
            position = on_hand + on_order
            qty = np.where(position <= rop, np.maximum(up_to - position, 0), 0)
            for i in np.flatnonzero(qty):
                arrivals[i, d + 1 + int(lead[i])] += qty[i]
            on_order += qty
        out[method] = {
            "stockout_days": stockout_days,
            "stockout_day_rate": round(stockout_days / (n * holdout), 4),
            "average_stock": round(stock_sum / (n * holdout), 2),
        }
    return out


def pooled(
    runs: list[tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]],
) -> dict[str, Any]:
    """Several generated histories as one report: per class, each method's MASE averaged
    over the histories (series summed) and in how many the forecast beat both others; the
    simulation's figures summed (stockout days) or averaged (rates, stock). One history's
    differences between methods are often within its noise; several show which hold."""
    mase: dict[str, dict[str, float]] = {}
    wins: dict[str, int] = {}
    for table, _ in runs:
        for cls, row in table.items():
            acc = mase.setdefault(
                cls, {"series": 0, "forecast": 0.0, "velocity": 0.0, "seasonal_naive": 0.0}
            )
            acc["series"] += row["series"]
            for m in ("forecast", "velocity", "seasonal_naive"):
                acc[m] += row[m] / len(runs)
            beat = row["forecast"] < min(row["velocity"], row["seasonal_naive"])
            wins[cls] = wins.get(cls, 0) + int(beat)
    for row in mase.values():
        for m in ("forecast", "velocity", "seasonal_naive"):
            row[m] = round(row[m], 3)
    simulation: dict[str, dict[str, float]] = {}
    for _, sim in runs:
        for method, v in sim.items():
            acc = simulation.setdefault(
                method, {"stockout_days": 0, "stockout_day_rate": 0.0, "average_stock": 0.0}
            )
            acc["stockout_days"] += v["stockout_days"]
            acc["stockout_day_rate"] += v["stockout_day_rate"] / len(runs)
            acc["average_stock"] += v["average_stock"] / len(runs)
    for v in simulation.values():
        v["stockout_day_rate"] = round(v["stockout_day_rate"], 4)
        v["average_stock"] = round(v["average_stock"], 2)
    return {"mase": mase, "wins": wins, "simulation": simulation}


def _timed_job(url: str, now: Any, history_days: int) -> tuple[dict[str, Any] | None, float, float]:
    """One forecast run (in a child process): its summary, seconds and peak RSS in MB."""
    from inventory_cache.forecast_job import run_forecast
    from persistence.db import make_engine, session_factory

    engine = make_engine(url)
    t0 = time.perf_counter()
    summary = run_forecast(
        session_factory(engine), run_id="bench", owner="bench", now=now, history_days=history_days
    )
    took = time.perf_counter() - t0
    engine.dispose()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
    hwm_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return summary, took, round(hwm_kb / 1024, 1)


def run_job(database_url: str, sc: gen_sales_history.Scenario) -> dict[str, Any]:
    """Write the scenario into a scratch database, then time one forecast run on it."""
    from datetime import UTC, datetime, timedelta

    from persistence.db import migrate

    name = f"bench_forecast_{os.getpid()}"
    url = benchlib.recreate_database(database_url, name)
    try:
        migrate(url)
        t0 = time.perf_counter()
        rows = gen_sales_history.write_ledger(url, sc)
        write_s = time.perf_counter() - t0
        now = datetime.combine(
            sc.start + timedelta(days=sc.sold.shape[1]), datetime.min.time(), tzinfo=UTC
        )
        # The job runs in a fresh process, as the scheduler's would, so that its peak
        # memory is its own and not the generator's or the writer's.
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            summary, job_s, job_rss_mb = pool.apply(
                _timed_job, (url, now, min(364, sc.sold.shape[1]))
            )
    finally:
        benchlib.drop_database(database_url, name)
    return {
        "series": len(sc.keys),
        "movements": rows,
        "write_seconds": round(write_s, 1),
        "job_seconds": round(job_s, 1),
        "job_peak_rss_mb": job_rss_mb,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--locations", type=int, default=2)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--holdout", type=int, default=56)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--seeds", type=int, default=1, help="generated histories (seed, seed+1, ...), pooled"
    )
    p.add_argument("--job", action="store_true", help="Time the nightly job on PostgreSQL instead.")
    p.add_argument("--database-url", default="")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    sc = gen_sales_history.generate(skus=a.skus, locations=a.locations, days=a.days, seed=a.seed)
    gen_s = round(time.perf_counter() - t0, 1)
    if a.job:
        if not a.database_url:
            raise SystemExit("--job needs --database-url")
        benchlib.require_loopback(a.database_url.replace("+psycopg", ""))
        report: dict[str, Any] = {"job": run_job(a.database_url, sc), "generate_seconds": gen_s}
    else:
        t0 = time.perf_counter()
        runs = []
        for seed in range(a.seed, a.seed + a.seeds):
            if seed != a.seed:
                sc = gen_sales_history.generate(
                    skus=a.skus, locations=a.locations, days=a.days, seed=seed
                )
            table, fitted, filled = mase_table(sc, a.holdout)
            runs.append((table, simulate(sc, a.holdout, fitted, filled)))
        fit_s = round(time.perf_counter() - t0, 1)
        report = {
            "series": len(sc.keys),
            "days": a.days,
            "holdout": a.holdout,
            "seeds": a.seeds,
            **pooled(runs),
            "fit_seconds": fit_s,
        }
        table = report["mase"]
        rows = [
            (
                cls,
                v["series"],
                v["forecast"],
                v["velocity"],
                v["seasonal_naive"],
                f"{report['wins'][cls]}/{a.seeds}",
            )
            for cls, v in table.items()
        ]
        print(
            benchlib.markdown_table(
                (
                    "class",
                    "series",
                    "forecast",
                    "velocity",
                    "seasonal naive",
                    "histories where forecast beat both",
                ),
                rows,
            )
        )
        sim = report["simulation"]
        print(
            benchlib.markdown_table(
                ("method", "stockout days", "share of days", "average stock"),
                [
                    (m, v["stockout_days"], v["stockout_day_rate"], v["average_stock"])
                    for m, v in sim.items()
                ],
            )
        )
    print(json.dumps(report, default=str))
    return report


if __name__ == "__main__":
    main()
