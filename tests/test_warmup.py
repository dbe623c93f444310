"""Redis is rebuildable from PostgreSQL: after a flush, writes are refused until
`warmup` has restored levels, reservations, transfers and idempotency records, and then
retries replay instead of applying twice. `verify` finds any difference left."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aredis
import sqlalchemy as sa

from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotReady
from inventory_cache.models import Level, LineRequest
from inventory_cache.settings import Settings
from inventory_cache.verify import Difference, verify
from inventory_cache.warmup import warmup
from inventory_cache.worker import Worker, WorkerConfig
from persistence.db import make_engine, migrate
from persistence.sink import make_sink
from tests.support.clock import ManualClock
from tests.support.redis_state import flush_prefix
from tests.support.services import REDIS_URL, make_settings


def drain(client: Any, url: str, settings: Settings) -> None:
    sink = make_sink(url)
    try:
        Worker(client, sink, settings, WorkerConfig(consumer="w1")).run_until_idle(30)
    finally:
        sink.close()


async def seed(eng: StockEngine) -> None:
    """A little of everything: stock at two locations, an active two-group order, a
    cancelled order, a transfer in transit, a safety stock."""
    await eng.inbound(ref="in-a", sku="A", location="north", qty=10)
    await eng.inbound(ref="in-a2", sku="A", location="south", qty=4)
    await eng.inbound(ref="in-b", sku="B", location="north", qty=1000)
    await eng.inbound(ref="in-c", sku="C", location="south", qty=5)
    await eng.reserve(order_id="o1", lines=[LineRequest("A", 2), LineRequest("C", 1, "south")])
    await eng.reserve(order_id="o2", lines=[LineRequest("A", 3, "south")])
    await eng.cancel("o2")
    await eng.request_transfer(
        transfer_id="t1", sku="B", from_location="north", to_location="south", qty=100
    )
    await eng.ship_transfer("t1")
    await eng.set_safety_stock(sku="B", location="north", safety_stock=7)


async def test_after_a_flush_writes_are_refused_until_warmup_restores_everything(
    pg: tuple[str, Any], prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await seed(eng)
    before = {sku: await eng.stock(sku) for sku in "ABC"}
    o1 = await eng.get_reservation("o1")
    drain(client, url, settings)

    flush_prefix(client, prefix)
    with pytest.raises(NotReady):
        await eng.inbound(ref="in-new", sku="A", location="north", qty=1)
    with pytest.raises(NotReady):
        await eng.availability("A")

    engine = make_engine(url)
    report = warmup(client, engine, settings, now_ms=clock())
    # o1 has a part in A's group and one in C's; o2 (cancelled, kept for retries) one.
    assert (report.skus, report.reservations, report.parts, report.transfers) == (3, 2, 3, 1)
    assert report.idempotency_records == 4

    assert {sku: await eng.stock(sku) for sku in "ABC"} == before
    assert await eng.get_reservation("o1") == o1
    again = await eng.reserve(
        order_id="o1", lines=[LineRequest("A", 2), LineRequest("C", 1, "south")]
    )
    assert again.replayed and again.lines == o1.lines
    assert (await eng.stock("A")).locations["north"].locked == 2
    # The first answer, replayed: on_hand stays 10 (the inbound is not applied twice).
    assert (await eng.inbound(ref="in-a", sku="A", location="north", qty=10)) == Level(
        "A", "north", 10, 0, 0, 10, replayed=True
    )
    assert (await eng.stock("A")).locations["north"].on_hand == 10
    assert (await eng.cancel("o2")).status == "cancelled"
    # t1 is in transit: its index is restored without an expiry, as the engine keeps it.
    assert client.pttl(eng.keys.transfer_index("t1")) == -1
    received = await eng.receive_transfer("t1")
    assert (received.status, (await eng.stock("B")).locations["south"].on_hand) == ("received", 100)
    await eng.ship("o1")

    drain(client, url, settings)
    assert verify(client, engine, settings, wait_s=5) == []
    engine.dispose()
    await aclient.aclose()


async def test_warmup_keeps_what_redis_holds_and_skips_a_warm_redis(
    pg: tuple[str, Any], prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await eng.inbound(ref="r1", sku="A", location="north", qty=10)
    drain(client, url, settings)
    await eng.inbound(ref="r2", sku="A", location="north", qty=5)  # not yet in PostgreSQL

    engine = make_engine(url)
    assert warmup(client, engine, settings, now_ms=clock(), if_needed=True).skipped
    client.delete(eng.keys.ready(3))
    report = warmup(client, engine, settings, now_ms=clock(), if_needed=True)
    assert (report.skipped, report.skus, report.kept) == (False, 1, 2)
    assert (await eng.stock("A")).locations["north"].on_hand == 15
    engine.dispose()
    await aclient.aclose()


async def test_verify_names_every_difference_and_the_command_exits_1(
    pg: tuple[str, Any], prefix: str, clock: ManualClock
) -> None:
    url, client = pg
    settings = make_settings(prefix)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await seed(eng)
    drain(client, url, settings)
    engine = make_engine(url)
    assert verify(client, engine, settings, wait_s=5) == []

    client.hset(eng.keys.stock("A"), "o:north", 999)
    g = eng.keys.group_of("A")
    client.delete(eng.keys.part(g, "o1"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE transfers SET qty = 99"))
    o1 = await eng.get_reservation("o1")
    token = client.hget(eng.keys.order_index("o1"), "tok")
    assert token is not None
    diffs = verify(client, engine, settings, wait_s=1)
    assert diffs == [
        Difference(
            "stock",
            "A@north",
            "on_hand=999 locked=2 safety_stock=0",
            "on_hand=10 locked=2 safety_stock=0",
        ),
        Difference(
            "ledger",
            f"group {g} A@north",
            "on_hand=999 locked=2",
            "sum of movements: on_hand=10 locked=2",
        ),
        Difference(
            "reservation",
            f"o1 (group {g})",
            None,
            (token.decode(), o1.expires_at, [["A", "north", 2]]),
        ),
        Difference(
            "transfer",
            "t1",
            ("B", "north", "south", 100, "in_transit"),
            ("B", "north", "south", 99, "in_transit"),
        ),
    ]
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": REDIS_URL,
        "INVENTORY_REDIS_PREFIX": prefix,
        "INVENTORY_SLOT_GROUPS": "16",
        "INVENTORY_DATABASE_URL": url,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "inventory-cache"), "verify", "--wait", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines() == [str(d) for d in diffs]
    assert "4 difference(s)" in done.stderr
    engine.dispose()
    await aclient.aclose()


async def test_the_embedded_demo_rebuilds_from_sqlite(
    prefix: str, clock: ManualClock, tmp_path: Path
) -> None:
    """fakeredis and SQLite, as `inventory-cache demo` runs without any server."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    aclient = fakeredis.FakeAsyncRedis(server=server)
    url = f"sqlite+pysqlite:///{tmp_path / 'demo.sqlite3'}"
    migrate(url)
    settings = make_settings(prefix, redis_url=None)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    await seed(eng)
    before = {sku: await eng.stock(sku) for sku in "ABC"}
    o1 = await eng.get_reservation("o1")
    drain(client, url, settings)
    client.flushall()
    engine = make_engine(url)
    warmup(client, engine, settings, now_ms=clock())
    assert {sku: await eng.stock(sku) for sku in "ABC"} == before
    assert await eng.get_reservation("o1") == o1
    assert verify(client, engine, settings, wait_s=1) == []
    engine.dispose()
    await aclient.aclose()
