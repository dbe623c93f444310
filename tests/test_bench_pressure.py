"""scripts/bench_pressure.py: a tiny run of each scenario reports both phases and cleans up."""

from __future__ import annotations

import json
from typing import Any

import bench_pressure
import pytest

from tests.support.postgres import need_postgres
from tests.support.services import REDIS_URL, need_redis


@pytest.mark.parametrize("scenario", ["feed-resume", "large-orders"])
def test_a_tiny_run_reports_idle_and_pressure(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    need_redis()
    need_postgres()
    argv = ["--scenario", scenario, "--redis-url", REDIS_URL, "--clients", "2"]
    argv += ["--entries", "300", "--seconds", "4", "--idle-seconds", "1", "--probe-rate", "10"]

    assert bench_pressure.main(argv) == 0

    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    for phase in ("idle", "under_pressure"):
        assert result[phase]["healthz_ms"]["p99"] > 0
        assert result[phase]["checkout_ms"]["p99"] > 0
    assert set(result["targets"]) == {
        "healthz_p99_under_50ms",
        "checkout_p99_under_3x_idle",
        "api_memory_growth_under_100mb",
    }
    seen = result["under_pressure"]["pressure"]
    if scenario == "feed-resume":
        assert seen.get("events", 0) >= 300
    else:
        assert seen.get("http 201", 0) >= 1
