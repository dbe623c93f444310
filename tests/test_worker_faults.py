"""Faults under load (issue 3's "Show"): worker processes SIGKILLed at random (also between
COMMIT and XACK), PostgreSQL unreachable for a while, two workers at once. Afterwards every
event Redis holds is in the ledger exactly once, nothing is pending, and `verify` finds no
difference. Real Redis and PostgreSQL; the workers are subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import sqlalchemy as sa

from inventory_cache.engine import StockEngine
from inventory_cache.errors import InsufficientStock, InvalidState, NotFound
from inventory_cache.lag import backlog
from inventory_cache.models import LineRequest
from inventory_cache.settings import Settings
from inventory_cache.verify import verify
from inventory_cache.worker import GROUP
from persistence.db import make_engine
from persistence.events import Entry, parse
from persistence.ledger import build
from tests.support.clock import ManualClock
from tests.support.postgres import admin_execute, fresh_database
from tests.support.redis_state import flush_prefix
from tests.support.services import REDIS_URL, make_settings, need_redis

pytestmark = pytest.mark.slow


# A worker process as `inventory-cache worker` runs it, plus a hook that SIGKILLs the
# process right after its argv[3]-th COMMIT, before the XACK of that batch (0: never).
DRIVER = """
import logging, os, signal, sys
from inventory_cache.connection import make_sync_redis
from inventory_cache.settings import Settings
from inventory_cache.worker import Worker, WorkerConfig
from persistence.sink import make_sink

consumer, batch, kill_at, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
settings = Settings()
config = WorkerConfig(consumer, batch_size=batch, claim_idle_ms=500, claim_interval_s=0.5,
                      backoff_max_s=1.0)
commits = 0

def after_commit(entries):
    global commits
    commits += 1
    if commits == kill_at:
        with open(marker, "a") as f:
            f.write(consumer + "\\n")
        os.kill(os.getpid(), signal.SIGKILL)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
sinks = [make_sink(os.environ["INVENTORY_DATABASE_URL"]) for _ in range(2)]  # its default
worker = Worker(make_sync_redis(settings), sinks, settings, config, after_commit=after_commit)
worker.install_signal_handlers()
worker.run()
"""

SKUS = [f"S{i:02d}" for i in range(30)]
LOCATIONS = ["north", "south", "east"]


@dataclass
class Stack:
    url: str
    settings: Settings
    client: Any  # redis-py types a reply as `Awaitable[T] | T`
    eng: StockEngine
    clock: ManualClock
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self, consumer: str, *, kill_at: int = 0, batch: int = 200) -> Any:
        env = {
            **os.environ,
            "INVENTORY_REDIS_URL": REDIS_URL,
            "INVENTORY_REDIS_PREFIX": self.settings.redis_prefix,
            "INVENTORY_SLOT_GROUPS": str(self.settings.slot_groups),
            "INVENTORY_DATABASE_URL": self.url,
        }
        args = [consumer, str(batch), str(kill_at), str(self.marker)]
        with (self.tmp / f"{consumer}.log").open("ab") as log:  # the worker has its own copy
            proc = subprocess.Popen(
                [sys.executable, "-c", DRIVER, *args],
                env=env,
                stdout=log,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    @property
    def marker(self) -> Path:
        return self.tmp / "killed-after-commit"

    def commit_kills(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0

    async def drain_and_stop(
        self, proc: Any, within: float = 90, *, just_started: str | None = None
    ) -> None:
        """Wait until the ledger group has nothing left, then SIGTERM: a clean exit."""
        keys = self.eng.keys
        deadline = time.monotonic() + within
        while backlog(self.client, keys) and time.monotonic() < deadline:
            assert proc.poll() is None, (self.tmp / "final.log").read_text()[-3000:]
            await asyncio.sleep(0.2)
        assert backlog(self.client, keys) == 0
        # A worker signalled before it installed its handlers dies of the signal: wait
        # for a just-started one's first health record (written once it runs).
        while (  # noqa: ASYNC110 (polling another process's Redis record)
            just_started
            and not self.client.exists(f"{keys.prefix}:worker:{just_started}")
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0


@pytest.fixture
async def stack(prefix: str, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Stack]:
    need_redis()
    settings = make_settings(prefix)
    client = redis.Redis.from_url(REDIS_URL)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    with fresh_database() as url:
        s = Stack(url, settings, client, eng, clock, tmp_path)
        try:
            yield s
        finally:
            for proc in s.procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
    flush_prefix(client, prefix)
    client.close()
    await aclient.aclose()


class Load:
    """Mixed operations as a shop makes them: inbound, adjustments, POS, returns,
    reservations (1-3 lines, some across groups) then cancel, ship or expiry, transfers
    through every step, safety stock, and retries of earlier movements."""

    def __init__(self, eng: StockEngine, clock: ManualClock, seed: int) -> None:
        self.eng, self.clock, self.rng = eng, clock, random.Random(seed)
        self.n = 0
        self.orders: list[str] = []
        self.transfers: list[tuple[str, str]] = []
        self.done_refs: list[tuple[str, str, str, int]] = []  # (ref, sku, location, qty)
        self.reserved_during: dict[str, int] = {}
        self.phase = "normal"

    async def setup(self) -> None:
        for sku in SKUS:
            for loc in LOCATIONS:
                await self.eng.inbound(ref=f"init-{sku}-{loc}", sku=sku, location=loc, qty=500)

    async def one(self) -> None:
        self.n += 1
        i, rng, eng = self.n, self.rng, self.eng
        sku, loc = rng.choice(SKUS), rng.choice(LOCATIONS)
        roll = rng.random()
        try:
            if roll < 0.30:
                lines = [
                    LineRequest(rng.choice(SKUS), rng.randint(1, 3), rng.choice([None, loc]))
                    for _ in range(rng.randint(1, 3))
                ]
                await eng.reserve(order_id=f"o{i}", lines=lines, ttl_seconds=30)
                self.orders.append(f"o{i}")
                self.reserved_during[self.phase] = self.reserved_during.get(self.phase, 0) + 1
            elif roll < 0.42 and self.orders:
                order = self.orders.pop(rng.randrange(len(self.orders)))
                await (eng.cancel(order) if rng.random() < 0.5 else eng.ship(order))
            elif roll < 0.55:
                qty = rng.randint(1, 20)
                await eng.inbound(ref=f"in{i}", sku=sku, location=loc, qty=qty)
                self.done_refs.append((f"in{i}", sku, loc, qty))
            elif roll < 0.62:
                await eng.adjust(
                    ref=f"adj{i}", sku=sku, location=loc, reason="damage", delta=-rng.randint(1, 3)
                )
            elif roll < 0.72:
                kind = rng.choice(["sale", "sale", "return", "count"])
                qty = rng.randint(400, 600) if kind == "count" else rng.randint(1, 3)
                await eng.pos_event(event_id=f"pos{i}", type=kind, sku=sku, location=loc, qty=qty)
            elif roll < 0.76:
                await eng.record_return(
                    ref=f"ret{i}", sku=sku, location=loc, qty=1, restock=rng.random() < 0.7
                )
            elif roll < 0.82:
                dst = rng.choice([x for x in LOCATIONS if x != loc])
                await eng.request_transfer(
                    transfer_id=f"t{i}", sku=sku, from_location=loc, to_location=dst, qty=5
                )
                self.transfers.append((f"t{i}", "requested"))
            elif roll < 0.88 and self.transfers:
                tid, st = self.transfers.pop(rng.randrange(len(self.transfers)))
                if st == "requested" and rng.random() < 0.2:
                    await eng.cancel_transfer(tid)
                elif st == "requested":
                    await eng.ship_transfer(tid)
                    self.transfers.append((tid, "in_transit"))
                else:
                    await eng.receive_transfer(tid)
            elif roll < 0.90:
                await eng.set_safety_stock(sku=sku, location=loc, safety_stock=rng.randint(0, 5))
            elif self.done_refs:  # a client retrying: replayed, no event
                ref, s, at, qty = rng.choice(self.done_refs)
                assert (await eng.inbound(ref=ref, sku=s, location=at, qty=qty)).replayed
        except (InsufficientStock, InvalidState, NotFound):
            pass
        if i % 200 == 0:
            self.clock.advance(2)
            await eng.expire_due()

    async def run(self, total: int, rate: float) -> None:
        """`total` operations at about `rate` per second, 64 at a time."""
        started = time.monotonic()
        while self.n < total:
            await asyncio.gather(*(self.one() for _ in range(min(64, total - self.n))))
            ahead = self.n / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


def assert_ledger_exactly_once(stack: Stack) -> None:
    """Every event the streams hold is in the ledger once; nothing else is; nothing is
    pending; levels agree with the ledger's sums and with Redis (verify)."""
    client, keys = stack.client, stack.eng.keys
    events = []
    for g in keys.all_groups():
        for entry_id, fields in client.xrange(keys.events(g)):
            events.append(parse(Entry(g, entry_id.decode(), fields)))
    expected = build(events, 1).movements
    db = make_engine(stack.url)
    try:
        with db.connect() as conn:
            got = [
                tuple(r)
                for r in conn.execute(sa.text("SELECT op_id, sku, location FROM movements"))
            ]
            sums = {
                (r.sku, r.location): r.total
                for r in conn.execute(
                    sa.text(
                        "SELECT sku, location, sum(delta_on_hand) AS total FROM movements"
                        " GROUP BY sku, location"
                    )
                )
            }
        assert len(got) == len(set(got)) == len(expected)
        assert set(got) == set(expected)
        for g in keys.all_groups():
            assert client.xpending(keys.events(g), GROUP)["pending"] == 0
        for sku in SKUS:
            raw = client.hgetall(keys.stock(sku))
            for loc in LOCATIONS:
                assert sums[(sku, loc)] == int(raw[f"o:{loc}".encode()])
        assert verify(client, db, stack.settings, wait_s=5) == []
    finally:
        db.dispose()


async def test_random_sigkills_lose_and_double_nothing(stack: Stack) -> None:
    load = Load(stack.eng, stack.clock, seed=1)
    await load.setup()
    rng = random.Random(2)
    kills = 0

    async def chaos() -> None:
        """Every third worker kills itself between a COMMIT and its XACK; the others are
        SIGKILLed from outside after a random while (start-up takes about a second).
        A fast machine finishes the load early: the kills go on, into the drain of the
        backlog, until there have been ten."""
        nonlocal kills
        n = 0
        while not task.done() or kills < 10:
            n += 1
            consumer = "w-a" if rng.random() < 0.5 else f"w-{n}"  # same name: own pending
            batch = rng.choice([50, 200])
            if n % 3 == 0:
                proc = stack.start_worker(consumer, kill_at=rng.randint(1, 4), batch=batch)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(proc.wait, 20)
            else:
                proc = stack.start_worker(consumer, batch=batch)
                await asyncio.sleep(rng.uniform(1.5, 3.0))
            if proc.poll() is None:
                proc.kill()
            await asyncio.to_thread(proc.wait)
            kills += 1

    task = asyncio.create_task(load.run(20_000, rate=1000))
    await asyncio.gather(task, chaos())
    assert kills >= 10
    assert stack.commit_kills() >= 1

    await stack.drain_and_stop(stack.start_worker("final"), just_started="final")
    assert load.n == 20_000
    assert_ledger_exactly_once(stack)


async def test_postgresql_outage_under_load_is_retried_and_caught_up(stack: Stack) -> None:
    # Issue 3 asks for 30 s (INVENTORY_TEST_OUTAGE_S=30, about a minute more); the default
    # keeps the suite short and shows the same: a backlog, retries, then the catch-up.
    outage_s = float(os.environ.get("INVENTORY_TEST_OUTAGE_S", "12"))
    load = Load(stack.eng, stack.clock, seed=3)
    await load.setup()
    worker = stack.start_worker("w-outage")
    name = stack.url.rsplit("/", 1)[1]
    health_key = f"{stack.settings.redis_prefix}:worker:w-outage"

    async def outage() -> None:
        await asyncio.sleep(3)
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin_execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        load.phase = "outage"
        await asyncio.sleep(outage_s)
        health = json.loads(stack.client.get(health_key) or b"{}")
        assert health["state"] == "waiting for the database"
        # measured from the streams while it waits, not the figure from before the outage
        assert health["lag_entries"] > 50 * outage_s
        assert backlog(stack.client, stack.eng.keys) > 100 * outage_s
        load.phase = "after"
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    await asyncio.gather(load.run(int((outage_s + 6) * 700), rate=700), outage())
    assert load.reserved_during["outage"] > 30 * outage_s  # checkout kept working meanwhile
    await stack.drain_and_stop(worker)
    assert_ledger_exactly_once(stack)


async def test_two_workers_at_once_write_each_event_once(stack: Stack) -> None:
    load = Load(stack.eng, stack.clock, seed=4)
    await load.setup()
    one, two = stack.start_worker("w-one", batch=100), stack.start_worker("w-two", batch=100)
    # Both running before the load: on a busy machine one may take seconds to import, and
    # the other would have taken everything by then.
    keys = [f"{stack.settings.redis_prefix}:worker:{c}" for c in ("w-one", "w-two")]
    deadline = time.monotonic() + 60
    while stack.client.exists(*keys) < 2:
        assert time.monotonic() < deadline, "the workers did not start"
        await asyncio.sleep(0.05)
    await load.run(5_000, rate=1500)
    await stack.drain_and_stop(one)
    two.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(two.wait, 20) == 0
    assert_ledger_exactly_once(stack)
    applied = [
        json.loads(stack.client.get(f"{stack.settings.redis_prefix}:worker:{c}") or b"{}")
        for c in ("w-one", "w-two")
    ]
    assert all(h["applied"] > 500 for h in applied)  # both took a share
