"""PostgreSQL for tests, the one helper module: databases on the machine's server, and a
server of the test's own for outages.

The machine's server: a fresh database per test (migrated by `alembic upgrade head` unless
asked otherwise, so the migrations are what the tests exercise, not `metadata.create_all`),
dropped afterwards; `fresh_database()` is the one way tests create and drop one. A fixture
plugin (conftest's `pytest_plugins`): any test can ask for `pg_url`, or `pg` (that URL
and a Redis client); `fresh_database()` and `empty_database()` serve fixtures of other
scopes or URL forms. Follows need_redis: an unreachable server skips, or fails under
INVENTORY_REQUIRE_SERVICES=1.

A server of the test's own, `private_postgres()`: a cluster (initdb, pg_ctl) on a free
loopback port, so a test can stop and start it as an outage would, without touching the
machine's server. The server refuses to run as root, so the commands run as the
`postgres` user (`runuser` when the tests run as root); the data directory lives under
/tmp, which that user can reach. `fsync=off` spares the disk: a stop, even `-m
immediate`, is a crash of the server process, not of the machine, so the operating system
still holds every committed write. `synchronous_commit` stays on: with it off, a crash
would lose commits already reported to the worker, which is a loss the service does not
promise to survive.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from inventory_cache.connection import make_sync_redis
from inventory_cache.settings import Settings
from inventory_cache.worker import Worker
from persistence.db import libpq_url, make_engine, migrate, normalize_url
from persistence.sink import Sink, make_sink
from tests.support.ports import free_port
from tests.support.redis_state import flush_prefix
from tests.support.services import PG_URL, REDIS_URL, REQUIRE, need_redis


def _pg_up() -> bool:
    try:
        with psycopg.connect(libpq_url(PG_URL), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


PG_UP = _pg_up()


def need_postgres() -> None:
    if not PG_UP:
        if REQUIRE:
            pytest.fail(f"PostgreSQL at {PG_URL} is required (INVENTORY_REQUIRE_SERVICES=1)")
        pytest.skip(f"no PostgreSQL at {PG_URL}")


def admin_execute(sql: str) -> None:
    """Run one statement on the server's admin database, outside a transaction."""
    with psycopg.connect(libpq_url(PG_URL), autocommit=True) as conn:
        conn.execute(sql.encode())


def database_url_for(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the test server."""
    return make_url(normalize_url(PG_URL)).set(database=name).render_as_string(False)


@contextmanager
def fresh_database(*, migrated: bool = True) -> Iterator[str]:
    """A uniquely named database (migrated to head unless told not to); dropped on exit,
    whatever connections are still open."""
    need_postgres()
    name = "t_" + uuid.uuid4().hex[:16]
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        url = database_url_for(name)
        if migrated:
            migrate(url)
        yield url
    finally:
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_database() -> Iterator[str]:
    """An empty database as psycopg takes its URL (`postgresql://`), for code that creates
    its own schema (the PostgreSQL baseline); dropped on exit."""
    with fresh_database(migrated=False) as url:
        yield libpq_url(url)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The SQLAlchemy URL (`postgresql+psycopg://`) of a fresh migrated database."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Sink, sa.Engine]]:
    """A sink and an engine on a fresh migrated ledger, once on PostgreSQL and once on the
    demo's SQLite: the sinks keep the same merge rules, so their tests run on both."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+pysqlite:///{tmp_path / 'ledger.sqlite3'}"
            migrate(url)
        else:
            url = stack.enter_context(fresh_database())
        sink, engine = make_sink(url), make_engine(url)
        stack.callback(engine.dispose)
        stack.callback(sink.close)
        yield sink, engine


@pytest.fixture
def pg(prefix: str) -> Iterator[tuple[str, redis.Redis]]:
    """A fresh migrated database's URL and a synchronous client of the test Redis, whose
    keys under the test's prefix are removed afterwards."""
    need_redis()
    client = redis.Redis.from_url(REDIS_URL)
    with fresh_database() as url:
        yield url, client
    flush_prefix(client, prefix)
    client.close()


def drain_into_ledger(settings: Settings, database_url: str) -> None:
    """Run the write-behind worker until every stream entry is in PostgreSQL."""
    client = make_sync_redis(settings)
    sink = make_sink(database_url)
    try:
        Worker(client, sink, settings).run_until_idle(timeout_s=60)
    finally:
        sink.close()
        client.close()


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class PrivatePostgres:
    bin_dir: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """As a crash would: no shutdown checkpoint, every connection cut."""
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", "immediate", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    data = Path(tempfile.mkdtemp(prefix="inv-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    pg = PrivatePostgres(bin_dir, data, free_port())
    try:
        pg._run("initdb", "-D", str(data / "db"), "-A", "trust", "-U", "postgres", "--no-sync")
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            pg.stop()
        shutil.rmtree(data, ignore_errors=True)
