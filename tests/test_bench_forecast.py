"""The forecast bench and the scenario generator, on tiny inputs."""

from __future__ import annotations

import bench_forecast
import gen_sales_history
import numpy as np
import psycopg

from persistence.db import libpq_url
from tests.support.postgres import fresh_database, need_postgres
from tests.support.services import PG_URL


def test_the_generated_history_is_consistent_sales_never_exceed_stock() -> None:
    sc = gen_sales_history.generate(skus=12, locations=2, days=120, seed=3)

    assert sc.demand.shape == (24, 120) and set(sc.true_class) <= set(gen_sales_history.CLASSES)
    assert (sc.sold <= sc.demand).all() and (sc.close >= 0).all()
    # stock balance: opening + deliveries - sales + returns = closing, every day
    flow = sc.received - sc.sold + sc.returned
    assert (sc.opening[:, None] + np.cumsum(flow, axis=1) == sc.close).all()
    assert sc.stockout.any() and (sc.demand > sc.sold).any()  # some demand went unmet


def test_the_generator_writes_the_ledger_the_worker_would_have() -> None:
    sc = gen_sales_history.generate(skus=3, locations=2, days=30, seed=5)
    with fresh_database() as url:
        written = gen_sales_history.write_ledger(url, sc)
        with psycopg.connect(libpq_url(url)) as conn:
            sold = conn.execute(
                "SELECT -sum(delta_on_hand) FROM movements WHERE type = 'pos_sale'"
            ).fetchone()
            levels = conn.execute("SELECT sum(on_hand) FROM stock_levels").fetchone()
            bad = conn.execute(
                "SELECT count(*) FROM (SELECT delta_on_hand,"
                " on_hand_after - lag(on_hand_after) OVER w AS step FROM movements"
                " WINDOW w AS (PARTITION BY sku, location ORDER BY id)) m"
                " WHERE step IS NOT NULL AND step <> delta_on_hand"
            ).fetchone()

    assert written > 0
    assert sold is not None and int(sold[0]) == int(sc.sold.sum())
    assert levels is not None and int(levels[0]) == int(sc.close[:, -1].sum())
    assert bad == (0,)


def test_a_tiny_accuracy_and_simulation_run_reports_every_class_and_both_methods() -> None:
    report = bench_forecast.main(["--skus", "15", "--locations", "2", "--days", "200"])

    assert report["series"] == 30
    for row in report["mase"].values():
        assert set(row) == {"series", "forecast", "velocity", "seasonal_naive"}
        assert all(v > 0 for v in row.values())
    sim = report["simulation"]
    assert set(sim) == {"forecast", "velocity"}
    assert all(v["average_stock"] > 0 for v in sim.values())


def test_a_tiny_job_run_times_the_nightly_forecast_on_postgresql() -> None:
    need_postgres()

    report = bench_forecast.main(
        ["--job", "--database-url", PG_URL, "--skus", "5", "--locations", "2", "--days", "90"]
    )

    job = report["job"]
    assert job["series"] == 10 and job["summary"]["series"] > 0
    assert job["job_seconds"] > 0 and job["peak_rss_mb"] > 0
