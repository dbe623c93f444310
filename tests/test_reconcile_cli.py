"""`inventory-cache reconcile` against a CSV export: the table, the exit status, correct mode."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner
from wms_simulator import WmsSimulator

from inventory_cache.cli import app
from inventory_cache.engine import StockEngine
from tests.support.api import CLI, server_env
from tests.support.postgres import fresh_database
from tests.support.services import make_settings


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "reconcile", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_reconcile_command_prints_the_diffs_and_corrects_them(
    real_redis: Any, prefix: str, database: str, tmp_path: Path
) -> None:
    engine = StockEngine(real_redis, make_settings(prefix))
    await engine.mark_ready()
    sim = WmsSimulator()
    skus = [f"cli-{i:04d}" for i in range(600)]  # big enough for the progress bar
    await asyncio.gather(
        *(engine.inbound(ref="seed", sku=s, location="north", qty=9) for s in skus)
    )
    for s in skus:
        sim.seed(s, "north", 9)
    sim.drift("cli-0100", "north", -9)
    sim.drift("cli-0500", "north", 2)
    export = tmp_path / "wms.csv"
    sim.write_csv(export)
    env = server_env(prefix, database, INVENTORY_WMS_CSV_PATH=str(export))

    table = await asyncio.to_thread(run, env)
    fixed = await asyncio.to_thread(run, env, "--mode", "correct", "--json")
    sim.write_csv(export)  # the next export
    clean = await asyncio.to_thread(run, env, "--json")

    assert table.returncode == 1, table.stderr
    assert "600 checked, 2 differences" in table.stdout
    lines = [ln for ln in table.stdout.splitlines() if "cli-" in ln]
    assert [ln.replace("│", " ").split() for ln in lines] == [
        ["cli-0100", "north", "9", "0", "+9", "oversell_risk"],
        ["cli-0500", "north", "9", "11", "-2", "undersell"],
    ]
    assert fixed.returncode == 0, fixed.stderr
    assert "corrected 2 of 2" not in fixed.stdout  # messages go to stderr
    report = orjson.loads(fixed.stdout)
    assert report["mode"] == "correct"
    assert report["summary"]["corrected"] == 2
    assert report["diffs"] == [
        {
            "sku": "cli-0100",
            "location": "north",
            "ours": 9,
            "wms": 0,
            "diff": 9,
            "kind": "oversell_risk",
        },
        {
            "sku": "cli-0500",
            "location": "north",
            "ours": 9,
            "wms": 11,
            "diff": -2,
            "kind": "undersell",
        },
    ]
    assert clean.returncode == 0 and orjson.loads(clean.stdout)["diffs"] == []
    assert (await engine.stock("cli-0100")).locations["north"].on_hand == 0


def test_reconcile_command_without_a_wms_fails_clearly(prefix: str, database: str) -> None:
    result = run(server_env(prefix, database))

    assert result.returncode == 2
    assert "no WMS configured" in result.stderr


def test_reconcile_command_refuses_an_unknown_mode() -> None:
    result = CliRunner().invoke(app, ["reconcile", "--mode", "fix"])

    assert result.exit_code == 2
    assert "report or correct" in result.output
