"""The COPY-against-unnest bench writes every row each way and reports each way's rate."""

from __future__ import annotations

import bench_copy

from tests.support.postgres import need_postgres
from tests.support.services import PG_URL


def test_a_tiny_run_writes_every_row_of_every_way_and_reports_its_rate() -> None:
    need_postgres()

    report = bench_copy.main(
        ["--database-url", PG_URL, "--rows", "20", "--batches", "2", "--rounds", "2"]
    )

    assert report["movements"] == 20 * 2 * 2 * 3
    assert set(report["rows_per_s"]) == {"unnest (the sink)", "copy, 1 stage", "copy, 12 stages"}
    assert all(len(r) == 2 and min(r) > 0 for r in report["rows_per_s"].values())
