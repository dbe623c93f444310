"""scripts/bench_lua_cost.py: Redis's instructions per reservation, counted by callgrind."""

from __future__ import annotations

import shutil
from pathlib import Path

import bench_lua_cost
import pytest

from inventory_cache.scripts import load_scripts

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind is not installed on this machine"
)


def _variant(tmp_path: Path, prefix_lua: str) -> Path:
    """The project's expanded script with `prefix_lua` run first (after the shebang)."""
    shebang, _, rest = load_scripts()["reserve_order"].source.partition("\n")
    variant = tmp_path / "variant.lua"
    variant.write_text(f"{shebang}\n{prefix_lua}\n{rest}")
    return variant


def test_a_script_doing_more_work_counts_more_instructions_per_call(tmp_path: Path) -> None:
    variant = _variant(tmp_path, "for _ = 1, 50 do redis.call('EXISTS', KEYS[1]) end")
    dumped = tmp_path / "project.lua"
    argv = ["--calls", "20", "--warmup", "5", "--source", str(variant), "--dump", str(dumped)]

    counts = bench_lua_cost.main(argv)

    assert counts["project"] > 100_000  # a reservation is hundreds of thousands
    # Fifty more commands cost at least 1,000 instructions each.
    assert counts[str(variant)] > counts["project"] + 50_000
    assert dumped.read_text() == load_scripts()["reserve_order"].source


def test_a_variant_that_does_not_reserve_is_refused_rather_than_counted(tmp_path: Path) -> None:
    variant = _variant(tmp_path, 'do return \'{"err": "not_ready"}\' end')

    with pytest.raises(SystemExit, match="did not reserve"):
        bench_lua_cost.main(["--calls", "5", "--warmup", "1", "--source", str(variant)])
