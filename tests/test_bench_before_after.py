"""bench_before_after reads the engine bench's table and judges each row within 5%."""

from __future__ import annotations

import bench_before_after
import bench_forecast

ENGINE_OUTPUT = """engine vs raw redis-py, 2026-11-28: redis-py 5.2.1, uvloop, load average 0.4

| op | SKUs | tasks | engine calls/s | raw calls/s | engine/raw | engine p50 / p99 ms |
|---|---|---|---|---|---|---|
| reserve | hot | 16 | 19,752 | 9,100 | 2.17x | 0.8 / 1.9 |
| read | 10000 random | 64 | 43,655 | 40,000 | 1.09x | 1.4 / 3.0 |

lowest engine/raw: 1.09x (target >= 0.6x): met
"""


def test_the_engine_table_is_read_as_calls_per_second_by_op_spread_and_tasks() -> None:
    rows = bench_before_after.engine_rows(ENGINE_OUTPUT)

    assert rows == {
        "engine reserve, hot SKUs, 16 tasks (calls/s)": 19_752.0,
        "engine read, 10000 random SKUs, 64 tasks (calls/s)": 43_655.0,
    }


def test_a_row_more_than_five_percent_slower_is_named_and_lower_latency_counts_as_faster() -> None:
    figures = {
        "before": {
            "HTTP ping (req/s)": [(100.0, 0.1, 0.2), (104.0, 0.2, 0.3), (96.0, 0.3, 0.4)],
            "HTTP checkout p99 (ms, lower is better)": [(20.0, 0.1, 0.2)],
            "write-behind, one worker (flushed events/s)": [(1000.0, 0.5, 0.6)],
        },
        "after": {
            "HTTP ping (req/s)": [(96.0, 0.2, 0.2), (95.0, 0.2, 0.9), (97.0, 0.3, 0.3)],
            "HTTP checkout p99 (ms, lower is better)": [(15.0, 0.1, 0.2)],
            "write-behind, one worker (flushed events/s)": [(940.0, 0.5, 0.6)],
        },
    }

    table, slower = bench_before_after.table(figures, "abc1234")

    assert slower == ["write-behind, one worker (flushed events/s)"]
    assert "| HTTP ping (req/s) | 100.0 (96.0-104.0) | 96.0 (95.0-97.0) | 0.960 | within 5% |" in (
        table
    )
    assert "| 20.0 (20.0-20.0) | 15.0 (15.0-15.0) | 0.750 | within 5% |" in table
    assert "0.940 | **slower** | 0.5-0.6 |" in table


def test_several_histories_pool_into_mean_mase_and_count_where_the_forecast_beat_both() -> None:
    one = {"lumpy": {"series": 10, "forecast": 0.9, "velocity": 0.95, "seasonal_naive": 1.0}}
    two = {"lumpy": {"series": 12, "forecast": 1.0, "velocity": 0.97, "seasonal_naive": 1.1}}
    sim = {"forecast": {"stockout_days": 3, "stockout_day_rate": 0.01, "average_stock": 10.0}}

    report = bench_forecast.pooled([(one, sim), (two, sim)])

    assert report["mase"]["lumpy"] == {
        "series": 22,
        "forecast": 0.95,
        "velocity": 0.96,
        "seasonal_naive": 1.05,
    }
    assert report["wins"] == {"lumpy": 1}
    assert report["simulation"]["forecast"] == {
        "stockout_days": 6,
        "stockout_day_rate": 0.01,
        "average_stock": 10.0,
    }
