"""Reconciliation against the WMS simulator: drift found, in-flight movements not mistaken."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from wms_simulator import EngineSink, WmsSimulator, serve

from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest
from inventory_cache.reconcile import Diff, reconcile
from inventory_cache.wms import HttpJsonWms, WmsSnapshot
from tests.support.clock import ManualClock
from tests.support.doubles import SimSource

SKUS = [f"P{i:03d}" for i in range(100)]
# sku -> silent change in the WMS: damage nobody reported (-), units found (+).
DRIFT = {"P003": -2, "P011": -1, "P020": 4, "P042": -5, "P057": 1, "P068": 3, "P099": -1}


class DuringTheRun:
    """A WMS source whose snapshot is followed, before we read our side, by more traffic:
    the outbox is delivered and new shipments happen on both sides after the instant."""

    def __init__(self, inner: Any, after: Callable[[], Awaitable[None]]) -> None:
        self.inner, self.after = inner, after

    def describe(self) -> str:
        return str(self.inner.describe())

    async def snapshot(self) -> WmsSnapshot:
        snap: WmsSnapshot = await self.inner.snapshot()
        await self.after()
        return snap


async def open_catalogue(engine: StockEngine, sim: WmsSimulator) -> None:
    for sku in SKUS:
        await engine.inbound(ref="seed", sku=sku, location="north", qty=50)
        sim.seed(sku, "north", 50)
    await engine.inbound(ref="seed-store", sku="P001", location="store-1", qty=5)  # not the WMS's


async def reserve(engine: StockEngine, order: str, sku: str, qty: int) -> None:
    await engine.reserve(order_id=order, lines=[LineRequest(sku, qty, "north")])


async def busy_warehouse(engine: StockEngine, sim: WmsSimulator, clock: ManualClock) -> None:
    """Shipments and receipts in every state a reconciliation can meet them in."""
    sink = EngineSink(engine)
    for i in range(10):
        await reserve(engine, f"o{i}", SKUS[i * 9], 2)  # P000, P009, ..., P081
        sim.ship_order(f"o{i}", [(SKUS[i * 9], "north", 2)])
        clock.advance(0.01)
    await sim.deliver(sink, limit=4)  # o0-o3 reported; o4-o9 still in the outbox
    await sink.ship("o4")  # reported, but the WMS has not cleared its outbox yet
    sim.receive(ref="rcv-1", sku="P020", location="north", qty=10)  # in flight
    for sku, delta in DRIFT.items():
        sim.drift(sku, "north", delta)
    clock.advance(0.01)


def after_snapshot(engine: StockEngine, sim: WmsSimulator, clock: ManualClock) -> Any:
    async def traffic() -> None:
        clock.advance(0.5)
        await sim.deliver(EngineSink(engine), limit=3)  # o4 (replayed), o5, o6 land now
        await reserve(engine, "late", "P050", 1)
        sim.ship_order("late", [("P050", "north", 1)])
        await sim.deliver(EngineSink(engine))  # ...and everything else, after the instant
        await engine.pos_event(
            event_id="till-1", type="sale", sku="P001", location="store-1", qty=1
        )

    return traffic


def expected_diffs(sim_stock: dict[tuple[str, str], int]) -> list[Diff]:
    out = []
    for sku, delta in sorted(DRIFT.items()):
        wms = sim_stock[(sku, "north")]
        kind = "oversell_risk" if delta < 0 else "undersell"
        out.append(Diff(sku, "north", wms - delta, wms, -delta, kind))  # type: ignore[arg-type]
    return out


async def test_reports_exactly_the_drifted_skus_despite_movements_in_flight(
    engine: StockEngine, clock: ManualClock
) -> None:
    sim = WmsSimulator(clock)
    await open_catalogue(engine, sim)
    await busy_warehouse(engine, sim, clock)
    wms_at_snapshot = dict(sim.stock)
    source = DuringTheRun(SimSource(sim), after_snapshot(engine, sim, clock))

    progress: list[tuple[int, int]] = []

    run = await reconcile(engine, source, mode="report", progress=lambda *p: progress.append(p))

    assert run.checked == 100
    assert progress[-1] == (100, 100)  # SKUs read of all, as the CLI's bar shows them
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    assert run.diffs == expected_diffs(wms_at_snapshot)
    assert [d.kind for d in run.diffs].count("oversell_risk") == 4
    assert run.corrected == 0
    assert (await engine.stock("P003")).locations["north"].on_hand == 50  # report only


async def test_correct_mode_fixes_the_drift_and_the_next_run_reports_none(
    engine: StockEngine, clock: ManualClock
) -> None:
    sim = WmsSimulator(clock)
    await open_catalogue(engine, sim)
    await busy_warehouse(engine, sim, clock)
    wms_at_snapshot = dict(sim.stock)
    source = DuringTheRun(SimSource(sim), after_snapshot(engine, sim, clock))

    fixed = await reconcile(engine, source, mode="correct")
    clock.advance(1)
    sim.receive(ref="rcv-2", sku="P042", location="north", qty=6)  # in flight, not drift
    again = await reconcile(engine, SimSource(sim), mode="correct")
    await sim.deliver(EngineSink(engine))

    assert fixed.diffs == expected_diffs(wms_at_snapshot)
    assert (fixed.corrected, fixed.failures) == (7, [])
    assert again.diffs == []
    for (sku, loc), wms in sim.stock.items():
        assert (await engine.stock(sku)).locations[loc].on_hand == wms, sku
    movement = await engine.client.xrevrange(engine.keys.events(engine.keys.group_of("P042")))
    reasons = [f[b"reason"] for _, f in movement if b"P042" in f[b"rows"]]
    assert reasons[:2] == [b"inbound", b"reconcile"]


async def test_reads_the_simulator_over_http_on_loopback(
    engine: StockEngine, clock: ManualClock
) -> None:
    sim = WmsSimulator(clock)
    await open_catalogue(engine, sim)
    await busy_warehouse(engine, sim, clock)
    wms_at_snapshot = dict(sim.stock)
    server = serve(sim)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/snapshot"
        source = DuringTheRun(HttpJsonWms(url), after_snapshot(engine, sim, clock))
        run = await reconcile(engine, source)
    finally:
        server.shutdown()
        server.server_close()

    assert run.source == f"http:{url}"
    assert run.diffs == expected_diffs(wms_at_snapshot)


def test_the_simulator_serves_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve(WmsSimulator(), host="0.0.0.0")
