"""bench_all rewrites only its own sections of BENCHMARKS.md, and keeps their notes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bench_all
import benchlib

DOC = """# Benchmarks

How to read this file.

## Engine

their engine table

## HTTP

last run's table

### Notes

why a target was missed

## Write-behind

their write-behind table
"""


def test_only_the_named_sections_change_and_hand_written_notes_stay() -> None:
    new = bench_all.replace_sections(DOC, {"HTTP": "this run's table"})

    assert new == DOC.replace("last run's table", "this run's table")


def test_missing_sections_are_appended_after_the_others() -> None:
    new = bench_all.replace_sections(DOC, {"Machine and commands": "2 cores"})

    assert new == DOC + "\n## Machine and commands\n\n2 cores\n"
    assert bench_all.replace_sections("# Benchmarks\n", {"HTTP": "t"}) == (
        "# Benchmarks\n\n## HTTP\n\nt\n"
    )


def report(
    rps: float, p99: float, load: tuple[float, float], sold: float | None = None
) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "requests_per_s": rps,
        "ops_per_s": rps,
        "latency_ms": {"p50": p99 / 2, "p95": p99, "p99": p99},
        "errors": 1,
        "load": load,
    }
    if sold is not None:
        rep["flash_sale"] = {"sold_per_s": sold, "oversold": 0, "ok": True}
    return rep


def test_a_row_is_the_median_of_its_rounds_with_their_spread_and_load() -> None:
    rounds = [report(100, 9, (1.0, 1.5)), report(300, 3, (0.5, 2.5)), report(200, 5, (1.2, 1.4))]

    row = bench_all.merged(rounds)

    assert row["requests_per_s"] == 200
    assert row["latency_ms"]["p99"] == 5
    assert row["spread"]["requests_per_s"] == (100, 300)
    assert row["spread"]["p99"] == (3, 9)
    assert row["load"] == (0.5, 2.5)
    assert row["errors"] == 3
    assert row["rounds"] == 3


def test_a_flash_sale_row_keeps_the_worst_oversell_of_its_rounds() -> None:
    rounds = [report(10, 1, (0, 0), sold=50), report(10, 1, (0, 0), sold=70)]
    rounds[1]["flash_sale"].update(oversold=2, ok=False)

    row = bench_all.merged(rounds)

    assert row["flash_sale"]["sold_per_s"] == 60
    assert row["spread"]["sold_per_s"] == (50, 70)
    assert row["flash_sale"]["oversold"] == 2
    assert row["flash_sale"]["ok"] is False


def test_a_ratio_is_the_median_of_the_rounds_own_ratios_with_their_spread() -> None:
    """Round 2 ran on a slower machine for both sides: the ratio of the medians (200 ÷ 100
    = 2x) would mix one round's ours with another's baseline."""
    ours = bench_all.merged(
        [report(100, 1, (0, 0)), report(300, 1, (0, 0)), report(200, 1, (0, 0))]
    )
    baseline = bench_all.merged(
        [report(100, 1, (0, 0)), report(100, 1, (0, 0)), report(50, 1, (0, 0))]
    )

    paired = bench_all.paired_ratio(ours, baseline, "requests_per_s")

    assert paired == (3.0, 1.0, 4.0)
    assert bench_all.ratio_cell(paired) == "3.00x (1.00-4.00)"


def test_a_flash_sale_ratio_pairs_the_rounds_sold_per_second() -> None:
    ours = bench_all.merged([report(10, 1, (0, 0), sold=300), report(10, 1, (0, 0), sold=500)])
    baseline = bench_all.merged([report(10, 1, (0, 0), sold=100), report(10, 1, (0, 0), sold=250)])

    assert bench_all.paired_ratio(ours, baseline, "sold_per_s") == (2.5, 2.0, 3.0)


def test_the_other_benches_run_here_are_those_that_run_with_their_defaults() -> None:
    """bench_pressure needs `--scenario`, and the abuse, before-and-after and steady-memory
    runs take minutes each: run beside the others with a 150 s budget, they only failed
    or were stopped, and the run said nothing about them."""
    ran = [p.name for p in bench_all.other_benches()]

    assert ran[:3] == list(bench_all.OTHER_BENCHES)
    assert not set(ran) & set(bench_all.ON_THEIR_OWN)
    assert {"bench_feed.py", "bench_asgi.py", "bench_forecast.py"} <= set(ran)
    for name in bench_all.ON_THEIR_OWN:
        assert (bench_all.SCRIPTS / name).exists(), name


def test_ours_at_the_baselines_half_of_peak_is_a_row_of_its_own_beside_the_baselines() -> None:
    """Each side's half of peak is a different offered load; the extra row sets ours at
    the baseline's beside the baseline's own figures."""
    names = ("ping", "availability", "flash-sale", "checkout", "mixed", "mixed-half")
    r: dict[tuple[str, str], dict[str, Any]] = {}
    for side in ("ours", "baseline", "handrolled"):
        for name in names:
            rep = report(1000, 8 if side == "baseline" else 20, (1.0, 2.0), sold=500)
            rep["offered_rate"] = 600 if side == "baseline" else 1500
            r[(side, name)] = bench_all.merged([rep])
    r[("ours", "mixed-equal")] = bench_all.merged([report(600, 4, (1.0, 2.0))])

    table, verdicts = bench_all.http_table(r)

    rows = [line for line in table.splitlines() if "| mixed at " in line]
    assert len(rows) == 2
    assert "mixed at the baseline's half of peak" in rows[1]
    assert "| 600 (600-600) | 1,000 (1,000-1,000) |" in rows[1]
    assert "| 2.0 / 4.0 | 4.0 / 8.0 |" in rows[1]
    assert verdicts[-1][1] is False  # the target still compares each side's own half of peak


def test_a_cpu_split_charges_each_part_its_own_seconds_and_the_rest_to_other() -> None:
    counters = {"api:ours": 10.0, "redis": 3.0, "": 100.0}
    split = benchlib.CpuSplit(
        {"api:ours": lambda: counters["api:ours"], "redis": lambda: counters["redis"]},
        machine=lambda: counters[""],
    )
    before = split.read()
    counters.update({"api:ours": 12.0, "redis": 3.5, "": 103.0})  # 0.5 s went elsewhere

    per_request = benchlib.CpuSplit.per_request(before, split.read(), 1000)

    assert per_request == {"api:ours": 2000.0, "redis": 500.0, "other": 500.0, "total": 3000.0}


def cpu_rounds(rate: Sequence[float], parts: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """A flash-sale row merged from rounds that each carry a CPU split."""
    rounds = []
    for i, r in enumerate(rate):
        rep = report(r, 1, (0, 0), sold=r / 2)
        rep["cpu_us_per_request"] = {part: values[i] for part, values in parts.items()}
        rounds.append(rep)
    return bench_all.merged(rounds)


def test_a_cpu_split_row_is_the_median_of_each_part_over_the_rounds() -> None:
    row = cpu_rounds([1, 2, 3], {"redis": [50, 10, 30], "total": [900, 700, 800]})

    assert row["cpu_us_per_request"] == {"redis": 30, "total": 800}


def test_the_cpu_table_shows_each_sides_own_api_and_what_the_flash_sale_split_bounds() -> None:
    """Ours' requests cost the machine 1,000 µs and the hand-rolled app's 500: about half
    its rate. Even at the hand-rolled API's 200 µs ours would cost 1,000 - 400 + 200 = 800
    µs, 0.62x. The idle APIs of the other sides count in `other`."""
    ours = cpu_rounds(
        [500, 500],
        {
            "api:ours": [400, 400],
            "api:handrolled": [5, 5],
            "worker": [100, 100],
            "postgres": [150, 150],
            "redis": [120, 120],
            "load": [150, 150],
            "other": [75, 75],
            "total": [1000, 1000],
        },
    )
    hand = cpu_rounds(
        [1000, 1000],
        {
            "api:ours": [10, 10],
            "api:handrolled": [200, 200],
            "worker": [2, 2],
            "postgres": [0, 0],
            "redis": [50, 50],
            "load": [150, 150],
            "other": [88, 88],
            "total": [500, 500],
        },
    )

    text = bench_all.cpu_table({("ours", "flash-sale"): ours, ("handrolled", "flash-sale"): hand})

    assert text.splitlines()[2:4] == [
        "| flash sale | ours | 400 | 100 | 150 | 120 | 150 | 80 | 1,000 |",
        "| flash sale | hand-rolled | 200 | 2 | 0 | 50 | 150 | 98 | 500 |",
    ]
    assert text.endswith(
        "In the flash sale the hand-rolled app's requests cost the machine 500 µs of CPU each"
        " and ours 1,000 µs: 0.50x, where their request rates gave 0.50x. With our API no"
        " dearer than the hand-rolled app's (200 µs a request against 400), ours would still"
        " cost 800 µs: about 0.62x of its rate on this machine."
    )


def test_the_cpu_meters_count_a_named_process_its_finished_children_and_the_machine(
    tmp_path: Path,
) -> None:
    """A process named as no other on the machine spins 0.3 s: its name's meter counts it
    while it lives; once waited for, the bench process's own meter (the load generator's)
    and the machine's busy time have counted it too."""
    name = f"split{uuid.uuid4().hex[:8]}"  # the kernel keeps 15 characters of a name
    spinner = tmp_path / name
    spinner.symlink_to(os.path.realpath(sys.executable))
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    own0, machine0 = benchlib.own_cpu_seconds(), benchlib.machine_busy_seconds()
    proc = subprocess.Popen([str(spinner), "-c", spin + "\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while benchlib.named_cpu_seconds(name) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        named = benchlib.named_cpu_seconds(name)
    finally:
        proc.kill()
        proc.wait()

    assert 0.3 <= named < 1.0
    assert benchlib.named_cpu_seconds(name) == 0.0  # gone: nothing of that name lives
    assert benchlib.own_cpu_seconds() - own0 >= 0.3
    assert benchlib.machine_busy_seconds() - machine0 >= 0.3
