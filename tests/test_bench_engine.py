"""scripts/bench_engine.py: a tiny run prints every row and leaves no key behind."""

from __future__ import annotations

import re
from typing import Any

import bench_engine
import orjson
import pytest

from tests.support.services import REDIS_URL


def test_a_tiny_run_reports_both_sides_of_every_row(
    sync_redis: Any, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0.4 s a side: with 0.1 s, a row on a machine busy with the suite's parallel workers
    # sometimes finished no call at all.
    argv = ["--url", REDIS_URL, "--prefix", prefix, "--seconds", "0.4", "--slices", "1"]
    code = bench_engine.main([*argv, "--tasks", "2,4", "--skus", "10"])

    out = capsys.readouterr().out
    rows = re.findall(
        r"^\| (reserve|read) \| (hot|10 random) \| (\d+) \| ([\d,]+) \| ([\d,]+) \|", out, re.M
    )
    assert len(rows) == 8  # 2 ops x 2 spreads x 2 task counts
    assert all(
        int(eng.replace(",", "")) > 0 and int(raw.replace(",", "")) > 0 for *_, eng, raw in rows
    )
    assert code == (0 if "target >= 1.0x): met" in out else 1)
    assert list(sync_redis.scan_iter(match=f"{prefix}:*", count=1000)) == []


async def test_the_raw_side_runs_the_engines_own_script_and_holds_a_unit_as_the_engine_would(
    sync_redis: Any, prefix: str
) -> None:
    bench = bench_engine.Bench(REDIS_URL, 3, prefix)
    try:
        await bench.setup()

        reply = await bench.raw_reserve(bench.hot, "w")(1)
        await bench.engine_reserve(bench.hot, "e")(1)

        assert orjson.loads(reply)["status"] == "active"
        raw_order = await bench.engine.get_reservation("w1")
        assert raw_order.status == "active"
        assert [(ln.sku, ln.qty, ln.location) for ln in raw_order.lines] == [("HOT", 1, "north")]
        assert (await bench.engine.availability("HOT")).available == 10**9 - 2
    finally:
        await bench.drop_all()
    assert list(sync_redis.scan_iter(match=f"{prefix}:*", count=1000)) == []
