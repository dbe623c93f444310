"""The merged scripts refuse an argument naming no transition, kind or step, before writing."""

from __future__ import annotations

import pytest

from inventory_cache.engine import StockEngine
from inventory_cache.errors import ValidationError
from inventory_cache.models import LineRequest


async def _events(engine: StockEngine, sku: str) -> int:
    return int(await engine.client.xlen(engine.keys.events(engine.keys.group_of(sku))))


async def test_settle_refuses_an_unknown_transition(engine: StockEngine) -> None:
    await engine.inbound(ref="po", sku="a", location="north", qty=5)
    await engine.reserve(order_id="o-1", lines=[LineRequest("a", 2)])
    g = engine.keys.group_of("a")
    keys = [engine.keys.ready(g), engine.keys.part(g, "o-1"), engine.keys.expiry(g)]
    keys += [engine.keys.events(g), engine.keys.stock("a"), engine.keys.preorders("a")]
    before = await _events(engine, "a")
    with pytest.raises(ValidationError, match="unknown transition lose"):
        await engine.run("settle", keys, ["o-1", engine.now(), 1000, '["a"]', "", "lose"])
    assert await _events(engine, "a") == before
    assert (await engine.get_reservation("o-1")).status == "active"
    assert (await engine.stock("a")).locations["north"].locked == 2


async def test_movement_refuses_an_unknown_kind(engine: StockEngine) -> None:
    g = engine.keys.group_of("a")
    keys = [engine.keys.ready(g), engine.keys.stock("a"), engine.keys.op("x", "a", "r")]
    keys.append(engine.keys.events(g))
    args = ["x:r", "r", "why", "a", "north", 5, "", "", "fp", engine.now(), 1000, "s", "gift"]
    with pytest.raises(ValidationError, match="unknown movement kind gift"):
        await engine.run("movement", keys, args)
    assert await _events(engine, "a") == 0
    assert (await engine.stock("a")).locations == {}


async def test_transfer_step_refuses_an_unknown_step(engine: StockEngine) -> None:
    await engine.inbound(ref="po", sku="a", location="north", qty=5)
    await engine.request_transfer(
        transfer_id="t-1", sku="a", from_location="north", to_location="south", qty=2
    )
    g = engine.keys.group_of("a")
    keys = [engine.keys.ready(g), engine.keys.transfer("a", "t-1"), engine.keys.stock("a")]
    keys.append(engine.keys.events(g))
    before = await _events(engine, "a")
    with pytest.raises(ValidationError, match="unknown transfer step lose"):
        await engine.run("transfer_step", keys, ["t-1", engine.now(), 1000, "lose"])
    assert await _events(engine, "a") == before
    assert (await engine.get_transfer("t-1")).status == "requested"
