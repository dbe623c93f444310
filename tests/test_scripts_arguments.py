"""The merged scripts refuse an argument naming no transition, kind or step, before writing."""

from __future__ import annotations

import pytest

from inventory_cache import script_calls as sc
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
        await engine.run(
            sc.settle(
                ready=keys[0],
                part=keys[1],
                expiry=keys[2],
                events=keys[3],
                sku_keys=keys[4:],
                order_id="o-1",
                now=engine.now(),
                retention_ms=1000,
                skus='["a"]',
                token="",
                transition="lose",  # type: ignore[arg-type]
            )
        )
    assert await _events(engine, "a") == before
    assert (await engine.get_reservation("o-1")).status == "active"
    assert (await engine.stock("a")).locations["north"].locked == 2


async def test_movement_refuses_an_unknown_kind(engine: StockEngine) -> None:
    g = engine.keys.group_of("a")
    keys = [engine.keys.ready(g), engine.keys.stock("a"), engine.keys.op("x", "a", "r")]
    keys.append(engine.keys.events(g))
    call = sc.movement(
        ready=keys[0],
        stock=keys[1],
        op=keys[2],
        events=keys[3],
        op_id="x:r",
        ref="r",
        reason="why",
        sku="a",
        location="north",
        delta=5,
        set_on_hand="",
        expected_on_hand="",
        fingerprint="fp",
        now=engine.now(),
        retention_ms=1000,
        op_suffix="s",
        kind="gift",  # type: ignore[arg-type]
    )
    with pytest.raises(ValidationError, match="unknown movement kind gift"):
        await engine.run(call)
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
        await engine.run(
            sc.transfer_step(
                ready=keys[0],
                transfer=keys[1],
                stock=keys[2],
                events=keys[3],
                transfer_id="t-1",
                now=engine.now(),
                retention_ms=1000,
                step="lose",  # type: ignore[arg-type]
            )
        )
    assert await _events(engine, "a") == before
    assert (await engine.get_transfer("t-1")).status == "requested"
