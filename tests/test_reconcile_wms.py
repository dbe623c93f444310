"""The WMS adapters: what a snapshot must look like, and what is refused before comparing."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from wms_simulator import WmsSimulator

from inventory_cache.settings import Settings
from inventory_cache.wms import (
    CsvFileWms,
    HttpJsonWms,
    InFlight,
    WmsError,
    parse_csv_snapshot,
    parse_json_snapshot,
    wms_from_settings,
)
from tests.support.clock import ManualClock


async def test_csv_export_of_the_simulator_reads_back_as_its_snapshot(tmp_path: Path) -> None:
    clock = ManualClock()
    sim = WmsSimulator(clock)
    sim.seed("A", "north", 7)
    sim.seed("B", "south", 0)
    sim.drift("A", "north", -2)
    path = tmp_path / "wms.csv"

    sim.write_csv(path)
    snap = await CsvFileWms(path).snapshot()

    assert snap.taken_at == clock.ms
    assert snap.on_hand == {("A", "north"): 5, ("B", "south"): 0}
    assert snap.in_flight == []
    assert snap.source == f"csv:{path}"
    assert os.listdir(tmp_path) == ["wms.csv"]  # no temporary file left


async def test_csv_without_a_time_line_is_as_of_its_modification_time(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("sku,location,on_hand\nA,north,3\n")
    os.utime(path, ns=(1_700_000_000_123_000_000, 1_700_000_000_123_000_000))

    snap = await CsvFileWms(path).snapshot()

    assert (snap.taken_at, snap.on_hand) == (1_700_000_000_123, {("A", "north"): 3})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sku,on_hand\nA,3\n", "header"),
        ("sku,location,on_hand\nA,north,-1\n", "line 2"),
        ("sku,location,on_hand\nA,north,x\n", "line 2"),
        ("sku,location,on_hand\nA b,north,1\n", "sku must be"),
        ("sku,location,on_hand\nA,north,1\nA,north,2\n", "appears twice"),
    ],
)
def test_a_bad_csv_is_refused_whole(text: str, message: str) -> None:
    with pytest.raises(WmsError, match=message):
        parse_csv_snapshot(text, 0)


def test_json_snapshot_with_iso_time_and_movements_in_flight() -> None:
    body = (
        b'{"taken_at": "2027-01-15T03:00:00Z", "items": [{"sku": "A", "location": "n",'
        b' "on_hand": 4}], "in_flight": [{"ref": "o1", "sku": "A", "location": "n",'
        b' "delta": -1, "at": 1800000000000}]}'
    )

    snap = parse_json_snapshot(body)

    assert snap.taken_at == datetime(2027, 1, 15, 3, tzinfo=UTC).timestamp() * 1000
    assert snap.on_hand == {("A", "n"): 4}
    assert snap.in_flight == [InFlight("o1", "A", "n", -1, 1_800_000_000_000)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"items": []}', "taken_at"),
        (b'{"taken_at": 1}', "items"),
        (b'{"taken_at": 1, "items": [{"sku": "A", "location": "n", "on_hand": 1.5}]}', "items"),
        (b'{"taken_at": 1, "items": [], "in_flight": [{"ref": "x"}]}', "in_flight"),
    ],
)
def test_a_bad_json_snapshot_is_refused_whole(body: bytes, message: str) -> None:
    with pytest.raises(WmsError, match=message):
        parse_json_snapshot(body)


async def test_an_unreachable_or_failing_wms_is_an_error_not_an_empty_snapshot() -> None:
    with pytest.raises(WmsError, match="cannot read"):
        await HttpJsonWms("http://127.0.0.1:9/snapshot", timeout=1).snapshot()


def test_settings_choose_the_adapter() -> None:
    assert isinstance(wms_from_settings(Settings(wms_url="http://wms/snap")), HttpJsonWms)
    assert isinstance(wms_from_settings(Settings(wms_csv_path="/x.csv")), CsvFileWms)
    with pytest.raises(WmsError, match="no WMS configured"):
        wms_from_settings(Settings())
