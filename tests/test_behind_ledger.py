"""Redis behind the ledger, on real servers: a private redis-server with AOF whose tail is
cut after the worker committed it (what an OS crash under `appendfsync everysec` does), and
a replica promoted after replication stopped. In both, the groups that lost changes are
found and refuse reads and writes (503 `not_ready`) while the others serve; `verify` names
them and exits 1; a write that reused a taken version is refused by the ledger instead of
forking it; and `warmup` heals them so that every change PostgreSQL holds is in Redis,
locks included, and a retry of a lost change is applied exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import sqlalchemy as sa
from local_cluster import LocalServers, die_with_parent
from prometheus_client import REGISTRY

from inventory_cache import behind
from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotReady
from inventory_cache.keys import Keys
from inventory_cache.models import LineRequest
from inventory_cache.settings import Settings
from inventory_cache.verify import verify
from inventory_cache.warmup import warmup
from inventory_cache.worker import FORK, Worker, WorkerConfig
from persistence.db import make_engine, migrate
from persistence.sink import make_sink
from tests.support import api as api_support
from tests.support.clock import ManualClock
from tests.support.postgres import drain_into_ledger, fresh_database, need_postgres
from tests.support.redis_state import skus_in_distinct_groups
from tests.support.services import REDIS_URL, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class AofServers(LocalServers):
    """redis-servers with AOF `everysec`, which a test can SIGKILL and start again on the
    same port and directory (and so the same AOF)."""

    def _options(self, port: int) -> dict[str, object]:
        return {
            **super()._options(port),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "appenddirname": f"aof-{port}",
            "auto-aof-rewrite-percentage": 0,
        }

    def kill9(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def restart(self, port: int, timeout: float = 30.0) -> None:
        argv = ["redis-server"]
        for name, value in self._options(port).items():
            argv += [f"--{name}", str(value)]
        with (self.workdir / f"{port}.log").open("ab") as log:
            self.procs[port] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.admin(port) as c:
                    if c.ping() and int(c.info("persistence")["loading"]) == 0:
                        return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {port} did not come back")

    def aof_tail(self, port: int) -> Path:
        """The incremental AOF file: every write since the server started."""
        (incr,) = (self.workdir / f"aof-{port}").glob("*.incr.aof")
        return incr


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[AofServers]:
    if not _redis_server_present():
        pytest.skip("redis-server not installed")
    s = AofServers(count=getattr(request, "param", 1))
    s.start()
    yield s
    s.stop()


def _redis_server_present() -> bool:
    from shutil import which

    return which("redis-server") is not None


@pytest.fixture
def database() -> Iterator[str]:
    need_postgres()
    with fresh_database() as url:
        yield url


class Service:
    """The engine, the worker and a database engine, pointed at one Redis."""

    def __init__(self, url: str, database_url: str, prefix: str, clock: ManualClock) -> None:
        self.settings: Settings = make_settings(prefix, redis_url=url)
        self.keys = Keys(prefix, self.settings.slot_groups)
        self.client: Any = redis.Redis.from_url(url)  # replies typed `Awaitable[T] | T`
        self.aclient = aredis.Redis.from_url(url)
        self.engine = StockEngine(self.aclient, self.settings, clock=clock)
        self.db = make_engine(database_url)
        self.database_url = database_url
        self.clock = clock
        self.sink = make_sink(database_url)
        self.worker = Worker(
            self.client,
            self.sink,
            self.settings,
            WorkerConfig(consumer="w1", claim_idle_ms=100),
            database=self.db,
        )
        # As the API does: the first script call a restarted (or other) server refuses
        # with NOSCRIPT runs the check before anything else runs there.
        self.engine.batcher.on_new_server = behind.guard(self.aclient, self.db, self.keys)

    def drain(self) -> None:
        self.worker.run_until_idle(60)

    async def close(self) -> None:
        self.sink.close()
        self.db.dispose()
        self.client.close()
        await self.aclient.aclose()


async def before_fault(svc: Service, skus: list[str], spare: str) -> None:
    """In Redis and in the ledger: 20 in at north each, o1 (2) active, o2 (3) cancelled."""
    await svc.engine.mark_ready()
    for sku in [*skus, spare]:
        await svc.engine.inbound(ref=f"in1-{sku}", sku=sku, location="north", qty=20)
        await svc.engine.reserve(order_id=f"o1-{sku}", lines=[LineRequest(sku, 2, "north")])
        await svc.engine.reserve(order_id=f"o2-{sku}", lines=[LineRequest(sku, 3, "north")])
        await svc.engine.cancel(f"o2-{sku}")
    svc.drain()


async def lost_by_redis(svc: Service, skus: list[str]) -> None:
    """Acknowledged and written to the ledger, then lost by Redis: per SKU 5 more in,
    o3 (4) reserved, o4 (1) reserved and cancelled, o1 cancelled; SKUs side by side."""

    async def one(sku: str) -> None:
        await svc.engine.inbound(ref=f"in2-{sku}", sku=sku, location="north", qty=5)
        await svc.engine.reserve(order_id=f"o3-{sku}", lines=[LineRequest(sku, 4, "north")])
        await svc.engine.reserve(order_id=f"o4-{sku}", lines=[LineRequest(sku, 1)])
        await svc.engine.cancel(f"o4-{sku}")
        await svc.engine.cancel(f"o1-{sku}")

    await asyncio.gather(*(one(sku) for sku in skus))
    svc.drain()


async def on_hand(svc: Service, sku: str) -> tuple[int, int]:
    level = (await svc.engine.stock(sku)).locations["north"]
    return level.on_hand, level.locked


def ledger_rows(db: sa.Engine, sql: str) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(sa.text(sql)))


async def behind_then_healed(svc: Service, skus: list[str], spare: str) -> None:
    """The outcome both faults must reach, from "Redis just came back behind"."""
    keys, eng = svc.keys, svc.engine
    groups = {keys.group_of(s) for s in skus}
    assert keys.group_of(spare) not in groups
    # Redis cannot tell: its markers survived, and it reports the old state to reads
    # (which run no script) until something compares it with the ledger.
    assert [await on_hand(svc, s) for s in skus] == [(20, 2)] * len(skus)

    # The first write meets an empty script cache: the comparison runs before the script
    # does, finds the groups behind, and the write is refused instead of reusing a
    # version the ledger holds.
    late = skus[0]
    with pytest.raises(NotReady):
        await eng.inbound(ref=f"late-{late}", sku=late, location="north", qty=1)

    # /readyz's rule names the same groups; the others keep serving.
    found = await behind.check_async(svc.aclient, svc.db, keys)
    assert set(found) == groups
    for sku in skus:
        with pytest.raises(NotReady):
            await eng.inbound(ref=f"in3-{sku}", sku=sku, location="north", qty=1)
        with pytest.raises(NotReady):
            await eng.stock(sku)
        with pytest.raises(NotReady):
            await eng.inbound(ref=f"in2-{sku}", sku=sku, location="north", qty=5)
    assert (await on_hand(svc, spare)) == (20, 2)
    await eng.inbound(ref=f"in3-{spare}", sku=spare, location="north", qty=1)

    svc.drain()
    assert svc.worker.groups_behind == {}  # already marked: nothing new to find
    assert svc.client.xlen(keys.dead_letters()) == 0

    diffs = verify(svc.client, svc.db, svc.settings, wait_s=5)
    named = {d.key for d in diffs}
    assert {f"group {g}" for g in groups} <= named
    assert {f"group {keys.group_of(s)} {s}@north" for s in skus} <= named
    assert not any(spare in d.key for d in diffs)
    assert cli_verify(svc) == 1

    report = warmup(svc.client, svc.db, svc.settings, now_ms=svc.clock(), drain_wait_s=10)
    assert report.healed == sorted(groups)

    # Every change the ledger holds is in Redis: levels are the ledger's sums, and locked
    # is the sum of the active reservations' lines (o3 only: o1 and o4 were cancelled).
    sums = {
        (r.sku, r.location): (r.on_hand, r.locked)
        for r in ledger_rows(
            svc.db,
            "SELECT sku, location, sum(delta_on_hand) AS on_hand, "
            "sum(delta_locked) AS locked FROM movements GROUP BY sku, location",
        )
    }
    active = {
        (r.sku, r.location): r.qty
        for r in ledger_rows(
            svc.db,
            "SELECT sku, location, sum(qty) AS qty FROM reservation_lines "
            "WHERE status = 'active' GROUP BY sku, location",
        )
    }
    for sku in skus:
        assert await on_hand(svc, sku) == sums[(sku, "north")] == (25, 4)
        assert active[(sku, "north")] == 4
        assert (await eng.get_reservation(f"o1-{sku}")).status == "cancelled"
        assert (await eng.get_reservation(f"o3-{sku}")).status == "active"
    assert await on_hand(svc, spare) == sums[(spare, "north")] == (21, 2)

    # A retry of each lost change is answered once, and applies nothing again.
    for sku in skus:
        again = await eng.inbound(ref=f"in2-{sku}", sku=sku, location="north", qty=5)
        assert (again.replayed, again.on_hand) == (True, 25)
        assert (await eng.cancel(f"o1-{sku}")).replayed
    # The refused write applied nothing: its retry applies it, once.
    retried = await eng.inbound(ref=f"late-{late}", sku=late, location="north", qty=1)
    assert (retried.replayed, retried.on_hand) == (False, 26)
    assert (await eng.inbound(ref=f"late-{late}", sku=late, location="north", qty=1)).replayed

    # Cancels after the heal never drive locked below 0.
    for sku in skus:
        await eng.cancel(f"o3-{sku}")
        assert await on_hand(svc, sku) == ((26 if sku == late else 25), 0)
    await eng.cancel(f"o1-{spare}")
    assert await on_hand(svc, spare) == (21, 0)

    svc.drain()
    assert verify(svc.client, svc.db, svc.settings, wait_s=5) == []
    assert cli_verify(svc) == 0
    assert (
        ledger_rows(
            svc.db,
            "SELECT sku, location, version FROM movements "
            "GROUP BY sku, location, version HAVING count(*) > 1",
        )
        == []
    )
    late_rows = ledger_rows(svc.db, f"SELECT 1 FROM movements WHERE ref = 'late-{late}'")
    assert len(late_rows) == 1


def cli_verify(svc: Service) -> int:
    env = {
        **os.environ,
        "INVENTORY_REDIS_URL": svc.settings.redis_url or "",
        "INVENTORY_REDIS_PREFIX": svc.settings.redis_prefix,
        "INVENTORY_SLOT_GROUPS": str(svc.settings.slot_groups),
        "INVENTORY_DATABASE_URL": svc.database_url,
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "inventory-cache"), "verify", "--wait", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


async def test_an_aof_tail_lost_after_the_worker_committed_it_is_found_refused_and_healed(
    servers: AofServers, database: str, prefix: str, clock: ManualClock
) -> None:
    port = servers.ports[0]
    svc = Service(servers.url, database, prefix, clock)
    try:
        skus = skus_in_distinct_groups(svc.engine, 4)
        spare, skus = skus[-1], skus[:-1]
        await before_fault(svc, skus, spare)
        cut = servers.aof_tail(port).stat().st_size

        await lost_by_redis(svc, skus)
        servers.kill9(port)
        with servers.aof_tail(port).open("r+b") as f:
            f.truncate(cut)
        servers.restart(port)

        await behind_then_healed(svc, skus, spare)
    finally:
        await svc.close()


@pytest.mark.parametrize("servers", [2], indirect=True)
async def test_a_replica_promoted_after_replication_stopped_is_found_refused_and_healed(
    servers: AofServers, database: str, prefix: str, clock: ManualClock
) -> None:
    primary, replica = servers.ports
    old = Service(f"redis://127.0.0.1:{primary}/0", database, prefix, clock)
    services = [old]
    try:
        with servers.admin(replica) as r:
            r.replicaof("127.0.0.1", primary)
        skus = skus_in_distinct_groups(old.engine, 4)
        spare, skus = skus[-1], skus[:-1]
        await before_fault(old, skus, spare)
        with servers.admin(primary) as p:
            assert p.wait(1, 10_000) == 1
        with servers.admin(replica) as r:
            r.replicaof("127.0.0.1", _closed_port())

        await lost_by_redis(old, skus)
        with servers.admin(replica) as r:
            r.replicaof("no", "one")
        # The service is pointed at the promoted replica.
        new = Service(f"redis://127.0.0.1:{replica}/0", database, prefix, clock)
        services.append(new)
        await behind_then_healed(new, skus, spare)
    finally:
        for svc in services:
            await svc.close()


def _closed_port() -> int:
    """A loopback port nothing listens on: a replica pointed there stops replicating."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_an_event_reusing_a_version_the_ledger_holds_is_dead_lettered_not_forked(
    kind: str, prefix: str, clock: ManualClock, tmp_path: Path, sync_redis: redis.Redis
) -> None:
    """Redis forgot a change the ledger holds (as after a restore from a backup) and hands
    its version to another operation: the worker refuses that event at its first delivery
    (dead letter, alarm), marks the group not ready, and the ledger keeps one row per
    version; the other groups keep serving."""
    if kind == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path / 'ledger.sqlite3'}"
        migrate(url)
        await _fork_scenario(url, prefix, clock, sync_redis)
    else:
        need_postgres()
        with fresh_database() as url:
            await _fork_scenario(url, prefix, clock, sync_redis)


async def _fork_scenario(url: str, prefix: str, clock: ManualClock, client: Any) -> None:
    svc = Service(REDIS_URL, url, prefix, clock)
    try:
        sku, other = skus_in_distinct_groups(svc.engine, 2)
        g = svc.keys.group_of(sku)
        await svc.engine.mark_ready()
        await svc.engine.inbound(ref="in1", sku=sku, location="north", qty=10)
        await svc.engine.inbound(ref="in1", sku=other, location="north", qty=10)
        svc.drain()
        client.hset(svc.keys.stock(sku), mapping={"o:north": 0, "v": 0})
        client.delete(svc.keys.op("inbound", sku, "in1"))
        forks = forks_counted()

        await svc.engine.inbound(ref="in2", sku=sku, location="north", qty=5)  # version 1 again
        svc.drain()

        dead = client.xrange(svc.keys.dead_letters())
        assert [(f[b"ref"], int(f[b"dl_deliveries"])) for _, f in dead] == [(b"in2", 1)]
        assert dead[0][1][b"dl_error"].decode().startswith(FORK)
        assert forks_counted() == forks + 1
        assert list(svc.worker.groups_behind) == [g]
        assert client.exists(svc.keys.ready(g)) == 0
        assert b"forks a version" in (client.get(svc.keys.behind(g)) or b"")
        with pytest.raises(NotReady):
            await svc.engine.inbound(ref="in3", sku=sku, location="north", qty=1)
        assert (
            await svc.engine.inbound(ref="in3", sku=other, location="north", qty=1)
        ).on_hand == 11
        rows = ledger_rows(
            svc.db, f"SELECT ref, version FROM movements WHERE sku = '{sku}' ORDER BY id"
        )
        assert [(r.ref, r.version) for r in rows] == [("in1", 1)]
    finally:
        await svc.close()


def forks_counted() -> float:
    return REGISTRY.get_sample_value("inventory_worker_version_forks_total") or 0.0


async def test_readyz_names_a_group_behind_the_ledger_and_only_that_group_refuses(
    api: api_support.Api, api_database: api_support.Database, sync_redis: Any
) -> None:
    eng = api.engine
    sku, other = skus_in_distinct_groups(eng, 2)
    g = eng.keys.group_of(sku)
    await eng.inbound(ref="in1", sku=sku, location="north", qty=10)
    await eng.inbound(ref="in1", sku=other, location="north", qty=10)
    drain_into_ledger(eng.settings, api_database.url)
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}
    # Redis loses the group's newest change, which the ledger holds.
    ((newest, _),) = sync_redis.xrevrange(eng.keys.events(g), count=1)
    sync_redis.xdel(eng.keys.events(g), newest)
    # /readyz answers from the process's background measurement (every
    # INVENTORY_STATUS_REFRESH_SECONDS): take the next one now.
    await api.app.state.services.status.refresh()

    ready = await api.client.get("/readyz")

    assert ready.status_code == 503
    body = ready.json()
    assert (body["code"], list(body["behind"])) == ("not_ready", [str(g)])
    assert "is lost" in body["behind"][str(g)]
    refused = await api.client.post(
        "/v1/inbound",
        json={"ref": "in2", "sku": sku, "location": "north", "qty": 1},
        headers=api.auth("warehouse"),
    )
    assert (refused.status_code, refused.json()["code"]) == (503, "not_ready")
    read = await api.client.get(f"/v1/stock/{sku}", headers=api.auth("read"))
    assert read.status_code == 503
    served = await api.client.get(f"/v1/stock/{other}", headers=api.auth("read"))
    assert served.json()["locations"]["north"]["on_hand"] == 10


async def test_the_worker_finds_a_group_behind_before_it_reads_and_reports_it_once(
    prefix: str, clock: ManualClock, sync_redis: Any
) -> None:
    need_postgres()
    with fresh_database() as url:
        svc = Service(REDIS_URL, url, prefix, clock)
        try:
            sku, other = skus_in_distinct_groups(svc.engine, 2)
            g = svc.keys.group_of(sku)
            await svc.engine.mark_ready()
            await svc.engine.inbound(ref="in1", sku=sku, location="north", qty=10)
            svc.drain()
            ((newest, _),) = sync_redis.xrevrange(svc.keys.events(g), count=1)
            sync_redis.xdel(svc.keys.events(g), newest)
            worker = Worker(sync_redis, svc.sink, svc.settings, database=svc.db)

            worker.step()
            worker.step()

            assert list(worker.groups_behind) == [g]
            assert sync_redis.exists(svc.keys.ready(g)) == 0
            assert sync_redis.exists(svc.keys.ready(svc.keys.group_of(other))) == 1
        finally:
            await svc.close()
