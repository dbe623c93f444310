"""bench_before_after runs each side's own code, reads the engine bench's table and judges
each row within 5%."""

from __future__ import annotations

import os
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import bench_all
import bench_before_after
import bench_forecast
import benchlib
import pytest

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


ENGINE_OUTPUT_WITH_CPU = """| op | SKUs | tasks | engine calls/s | raw calls/s | engine/raw \
| engine p50 / p99 ms | raw p50 / p99 ms | client CPU µs/call engine / raw |
|---|---|---|---|---|---|---|---|---|
| read | hot | 16 | 30,100 | 31,000 | 0.97x | 0.5 / 1.1 | 0.5 / 1.0 | 31 / 27 |
"""


def test_the_engine_client_cpu_per_call_is_a_row_where_lower_is_better() -> None:
    rows = bench_before_after.engine_rows(ENGINE_OUTPUT_WITH_CPU)

    assert rows == {
        "engine read, hot SKUs, 16 tasks (calls/s)": 30_100.0,
        "engine read, hot SKUs, 16 tasks, client CPU (µs/call, lower is better)": 31.0,
    }


def test_a_process_group_s_cpu_is_what_its_processes_used(tmp_path: Path) -> None:
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    with ExitStack() as stack:
        proc = stack.enter_context(
            bench_all.process(["python3", "-c", spin + "\ntime.sleep(30)"], {}, tmp_path / "log")
        )
        deadline = time.monotonic() + 10
        while benchlib.group_cpu_seconds(proc.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        used = benchlib.group_cpu_seconds(proc.pid)
        own = benchlib.process_cpu_seconds(proc.pid)

    assert 0.3 <= used < 1.0
    assert own == used  # the group is that one process
    assert benchlib.group_cpu_seconds(proc.pid) == 0.0  # the group is gone
    with pytest.raises(ProcessLookupError):
        benchlib.process_cpu_seconds(proc.pid)


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


FAKE_API = """
def app_from_env():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": __file__.encode()})
    return app
"""
FAKE_CLI = """
def app(args, prog_name):
    print("cli of", __file__, args, flush=True)
"""


def test_each_side_runs_the_api_and_the_worker_of_its_own_tree(tmp_path: Path) -> None:
    """uvicorn puts its app dir (the working directory by default) before PYTHONPATH, and
    `python -c` the working directory: started from this checkout, the older side would
    run this checkout's code."""
    tree = tmp_path / "older"
    (tree / "inventory_cache" / "api").mkdir(parents=True)
    (tree / "inventory_cache" / "__init__.py").write_text("")
    (tree / "inventory_cache" / "api" / "__init__.py").write_text("")
    (tree / "inventory_cache" / "api" / "main.py").write_text(FAKE_API)
    (tree / "inventory_cache" / "cli.py").write_text(FAKE_CLI)
    env = dict(os.environ, PYTHONPATH=str(tree))

    with ExitStack() as stack:
        url, group = bench_before_after.start_side(
            stack, tree, env, benchlib.free_port(), tmp_path, "before"
        )
        body = _get(url + "/v1/ping")
        api_cpu = benchlib.group_cpu_seconds(group)

    assert body == str(tree / "inventory_cache" / "api" / "main.py")
    assert api_cpu > 0  # uvicorn's start-up alone costs its group some CPU
    worker_log = (tmp_path / "before-worker.log").read_text()
    assert f"cli of {tree / 'inventory_cache' / 'cli.py'} ['worker']" in worker_log


def _get(url: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: bytes = resp.read()
                return body.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
