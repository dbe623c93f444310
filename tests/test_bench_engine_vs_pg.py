"""The engine-vs-PostgreSQL bench drives both sides alike and reports what they sold."""

from __future__ import annotations

import bench_engine_vs_pg

from tests.support.postgres import need_postgres
from tests.support.services import PG_URL, REDIS_URL, need_redis


def test_a_tiny_run_reports_every_side_of_both_scenarios() -> None:
    need_redis()
    need_postgres()

    report = bench_engine_vs_pg.main(
        [
            "--redis-url",
            REDIS_URL,
            "--database-url",
            PG_URL,
            "--processes",
            "1",
            "--concurrency",
            "2",
            "--pg-pool",
            "2",
            "--skus",
            "50",
            "--warmup",
            "0.2",
            "--duration",
            "0.5",
            "--rounds",
            "1",
        ]
    )

    rows = {(r["scenario"], r["side"]): r for r in report["rows"]}
    assert set(rows) == {
        (scenario, side)
        for scenario in ("hot", "spread")
        for side in ("engine", "pg", "pg-async-commit")
    }
    for row in rows.values():
        assert row["reservations_per_s"] > 0
        assert row["refused"] == 0  # stock is plentiful: every reservation succeeds
        assert len(row["rounds"]) == 1
