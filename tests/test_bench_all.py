"""bench_all rewrites only its own sections of BENCHMARKS.md, and keeps their notes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import bench_all

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
