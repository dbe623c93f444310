"""The worker's delivery rules, one at a time, against real Redis and PostgreSQL: own pending
entries first after a crash, takeover of a dead consumer's entries, dead letters, trimming
only what PostgreSQL committed, the health record and the metrics."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import sqlalchemy as sa
from prometheus_client import REGISTRY

from inventory_cache import lag
from inventory_cache.engine import StockEngine
from inventory_cache.models import LineRequest
from inventory_cache.settings import Settings
from inventory_cache.worker import GROUP, Worker, WorkerConfig
from persistence.db import make_engine
from persistence.events import Entry, parse_checked, parse_fast
from persistence.sink import Sink, make_sink
from tests.support.clock import ManualClock
from tests.support.postgres import fresh_database
from tests.support.redis_state import flush_prefix
from tests.support.services import REDIS_URL, make_settings, need_redis


@dataclass
class Env:
    eng: StockEngine
    client: Any  # redis-py types a reply as `Awaitable[T] | T`
    db: sa.Engine
    sink: Sink
    settings: Settings

    def worker(self, consumer: str, **config: Any) -> Worker:
        return Worker(self.client, self.sink, self.settings, WorkerConfig(consumer, **config))

    def ledger(self) -> list[tuple[str, str, str]]:
        with self.db.connect() as conn:
            q = "SELECT op_id, sku, location FROM movements ORDER BY op_id, sku, location"
            return [tuple(r) for r in conn.execute(sa.text(q))]

    def pending(self) -> int:
        return sum(
            int(self.client.xpending(self.eng.keys.events(g), GROUP)["pending"])
            for g in self.eng.keys.all_groups()
        )

    def read_as(self, consumer: str) -> int:
        """Read every new entry as `consumer` and never acknowledge: a consumer that died."""
        reply = self.client.xreadgroup(
            GROUP, consumer, {self.eng.keys.events(g): ">" for g in self.eng.keys.all_groups()}
        )
        return sum(len(items) for _, items in reply)


@pytest.fixture
async def env(prefix: str, clock: ManualClock) -> AsyncIterator[Env]:
    need_redis()
    settings = make_settings(prefix)
    client = redis.Redis.from_url(REDIS_URL)
    aclient = aredis.Redis.from_url(REDIS_URL)
    eng = StockEngine(aclient, settings, clock=clock)
    await eng.mark_ready()
    with fresh_database() as url:
        db, sink = make_engine(url), make_sink(url)
        yield Env(eng, client, db, sink, settings)
        sink.close()
        db.dispose()
    flush_prefix(client, prefix)
    client.close()
    await aclient.aclose()


async def three_ops(eng: StockEngine) -> None:
    """Four events: two inbounds and a reservation whose lines fall in two groups."""
    await eng.inbound(ref="r1", sku="A", location="north", qty=10)
    await eng.inbound(ref="r2", sku="B", location="south", qty=3)
    await eng.reserve(order_id="o1", lines=[LineRequest("A", 2), LineRequest("B", 1)])


async def backlog_of_inbounds(eng: StockEngine, n: int) -> None:
    """`n` inbound events over 100 SKUs, in the streams before any worker reads."""
    for i in range(0, n, 200):
        await asyncio.gather(
            *(
                eng.inbound(ref=f"r{k}", sku=f"S{k % 100}", location="north", qty=1)
                for k in range(i, min(i + 200, n))
            )
        )


EXPECTED = [
    ("inbound:r1", "A", "north"),
    ("inbound:r2", "B", "south"),
]


def reserve_rows(env: Env) -> list[tuple[str, str, str]]:
    return [r for r in env.ledger() if r[0].startswith("reserve:o1:")]


async def test_a_restarted_consumer_applies_its_own_pending_entries_first(env: Env) -> None:
    first = env.worker("w1")
    first.ensure_groups()
    await three_ops(env.eng)
    assert env.read_as("w1") == 4  # read, then the process died before writing anything
    assert env.ledger() == []

    # Pages of one entry: two streams hold two entries each.
    assert env.worker("w1", batch_size=1).drain_own_pending() == 4
    assert env.ledger()[:2] == EXPECTED
    assert [(s, loc) for _, s, loc in reserve_rows(env)] == [("A", "north"), ("B", "south")]
    assert env.pending() == 0


async def test_a_worker_starting_on_a_backlog_takes_about_one_batch_per_read(env: Env) -> None:
    await backlog_of_inbounds(env.eng, 2000)
    w = env.worker("w1", batch_size=320)  # 16 streams: 20 entries asked of each per read
    w.ensure_groups()

    w.step()

    assert 0 < w.applied <= 320  # not the whole backlog read (and held pending) at once
    assert len(env.ledger()) == w.applied
    assert env.pending() == 0  # what it read is committed and acknowledged
    w.run_until_idle(30)
    assert len(env.ledger()) == 2000


async def test_after_a_short_read_the_worker_lingers_before_reading_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trickle of events would otherwise cost a read of every stream and a transaction
    for each handful of events: at 2,000 events/s that was most of a core between the
    worker, Redis and PostgreSQL. After a read that did not fill a batch, the next read
    waits until `linger_ms` have passed since the last one began, and takes what came
    meanwhile in one batch."""
    w = env.worker("w1", batch_size=100, linger_ms=60_000)  # `_sleep` only records it
    w.ensure_groups()
    slept: list[float] = []
    monkeypatch.setattr(w, "_sleep", slept.append)
    await three_ops(env.eng)

    w.step()  # four entries after an idle stream: read at once
    assert (slept, w.applied) == ([], 4)

    await env.eng.inbound(ref="r3", sku="A", location="north", qty=1)
    w.step()

    assert len(slept) == 1 and 50 < slept[0] <= 60  # the minute less the time since the read
    assert w.applied == 5


async def test_a_full_read_is_followed_at_once_by_the_next(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog is read as fast as it commits: the linger only gathers a trickle."""
    await backlog_of_inbounds(env.eng, 2000)
    w = env.worker("w1", batch_size=320, linger_ms=60_000)  # 16 streams, 20 asked of each
    w.ensure_groups()
    slept: list[float] = []
    monkeypatch.setattr(w, "_sleep", slept.append)

    w.step()
    w.step()

    assert w.applied == 640
    assert slept == []


class CountingSink:
    """A sink that counts the batches it wrote (and sees how many ran at once)."""

    lock = threading.Lock()

    def __init__(self, inner: Sink, running: list[int]) -> None:
        self.inner, self.batches, self.running = inner, 0, running

    def apply(self, batch: Any) -> None:
        with self.lock:
            self.running[0] += 1
            self.running[1] = max(self.running[1], self.running[0])
        try:
            self.inner.apply(batch)
            self.batches += 1
        finally:
            with self.lock:
                self.running[0] -= 1

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


async def test_two_connections_commit_batches_side_by_side_each_event_once(env: Env) -> None:
    await backlog_of_inbounds(env.eng, 2000)
    running = [0, 0]  # now, most at once
    second = make_sink(env.db.url.render_as_string(hide_password=False))
    sinks = [CountingSink(env.sink, running), CountingSink(second, running)]
    w = Worker(env.client, sinks, env.settings, WorkerConfig("w1", batch_size=50))

    w.run_until_idle(30)
    second.close()

    assert len(env.ledger()) == 2000 == len(set(env.ledger()))
    assert env.pending() == 0
    assert sinks[0].batches > 0 and sinks[1].batches > 0
    assert sum(s.batches for s in sinks) >= 2000 // 50
    assert running[1] == 2


async def test_a_dead_consumers_entries_are_claimed_once_idle_long_enough(env: Env) -> None:
    live = env.worker("live", claim_idle_ms=300)
    live.ensure_groups()
    await three_ops(env.eng)
    assert env.read_as("dead") == 4
    assert live.claim() == 0  # not idle long enough: the owner may still be working
    await asyncio.sleep(0.4)
    assert live.claim() == 4
    assert env.ledger()[:2] == EXPECTED
    assert env.pending() == 0


async def test_poison_entries_are_dead_lettered_after_max_deliveries_and_the_rest_flow(
    env: Env,
) -> None:
    w = env.worker("w1", claim_idle_ms=100, max_deliveries=3)
    w.ensure_groups()
    stream = env.eng.keys.events(env.eng.keys.group_of("A"))
    await env.eng.inbound(ref="r1", sku="A", location="north", qty=10)
    bad_json = env.client.xadd(stream, {"t": "inbound", "op": "x:1", "ts": "1", "rows": "[1"})
    nul = json.dumps([["A\x00", "north", 1, 0, 1, 0, 0, 99]])
    refused = env.client.xadd(stream, {"t": "inbound", "op": "x:2", "ts": "1", "rows": nul})
    await env.eng.inbound(ref="r2", sku="B", location="south", qty=3)

    w.step()
    assert env.ledger() == EXPECTED  # the good entries are not held up by the bad ones
    assert env.pending() == 2  # the bad ones wait for another delivery
    assert env.client.xlen(env.eng.keys.dead_letters()) == 0

    w.run_until_idle(10)
    dead = env.client.xrange(env.eng.keys.dead_letters())
    assert [f[b"dl_id"] for _, f in dead] == [bad_json, refused]
    assert [int(f[b"dl_deliveries"]) for _, f in dead] == [3, 3]
    assert dead[0][1][b"dl_error"] == b"malformed: field 'rows' is not JSON"
    assert dead[1][1][b"dl_error"].startswith(b"refused by the database: DataError")
    assert dead[1][1][b"rows"] == nul.encode()
    assert env.pending() == 0
    assert env.ledger() == EXPECTED
    assert w.dead == 2


async def test_streams_are_trimmed_only_below_the_oldest_unacknowledged_entry(env: Env) -> None:
    keep_all = env.worker("w1")
    keep_all.ensure_groups()
    await three_ops(env.eng)
    keep_all.run_until_idle(10)
    streams = [env.eng.keys.events(g) for g in env.eng.keys.all_groups()]
    assert sum(env.client.xlen(s) for s in streams) == 4  # the last hour is kept

    trimmer = env.worker("w2", keep_ms=0, claim_idle_ms=60_000)
    await env.eng.inbound(ref="r3", sku="A", location="north", qty=1)
    assert env.read_as("dead") == 1  # read, never acknowledged: must survive trimming
    await env.eng.inbound(ref="r4", sku="A", location="north", qty=1)
    trimmer.step()
    trimmer.housekeeping(force=True)
    a_stream = env.eng.keys.events(env.eng.keys.group_of("A"))
    left = [f[b"op"] for _, f in env.client.xrange(a_stream)]
    assert left == [b"inbound:r3", b"inbound:r4"]
    assert sum(env.client.xlen(s) for s in streams) == 2


async def test_the_health_record_and_metrics_report_progress(env: Env) -> None:
    before = REGISTRY.get_sample_value("inventory_worker_events_total") or 0.0
    w = env.worker("w-health")
    await three_ops(env.eng)
    w.run_until_idle(10)
    health = json.loads(env.client.get(w.health_key()) or b"{}")
    assert (health["consumer"], health["applied"], health["lag_entries"]) == ("w-health", 4, 0)
    assert 0 < env.client.ttl(w.health_key()) <= 60
    assert REGISTRY.get_sample_value("inventory_worker_events_total") == before + 4
    assert REGISTRY.get_sample_value("inventory_worker_lag_entries") == 0


async def test_the_worker_and_the_api_measure_one_lag(env: Env) -> None:
    await three_ops(env.eng)
    w = env.worker("w-lag")
    w.ensure_groups()
    assert env.read_as("dead") == 4  # pending with a consumer that died
    await env.eng.inbound(ref="r-late", sku="A", location="north", qty=1)  # undelivered

    w.inspect(trim=False)
    measured = await lag.measure(env.eng)

    assert w.lag_entries == measured.entries == 5
    assert abs(w.lag_seconds - measured.seconds) < 1


async def test_the_fast_parser_reads_every_script_event_as_the_checked_one(env: Env) -> None:
    """The worker decodes the common case on a fast path; it must agree with the checked
    path (which names errors) on everything the Lua scripts emit."""
    eng = env.eng
    await three_ops(eng)
    await eng.cancel("o1")
    await eng.reserve(order_id="o2", lines=[LineRequest("A", 1)])
    await eng.ship("o2")
    await eng.request_transfer(
        transfer_id="t1", sku="A", from_location="north", to_location="south", qty=2
    )
    await eng.ship_transfer("t1")
    await eng.receive_transfer("t1")
    await eng.set_safety_stock(sku="A", location="north", safety_stock=1)
    await eng.pos_event(event_id="p1", type="count", sku="B", location="south", qty=9)
    entries = [
        Entry(g, i.decode(), f)
        for g in eng.keys.all_groups()
        for i, f in env.client.xrange(eng.keys.events(g))
    ]
    assert len(entries) == 13  # the first reservation and its cancel span two groups
    assert [parse_fast(e) for e in entries] == [parse_checked(e) for e in entries]
