"""PostgreSQL for tests, the one helper for the machine's server: a fresh database per
test (migrated by `alembic upgrade head` unless asked otherwise, so the migrations are what
the tests exercise, not `metadata.create_all`), dropped afterwards.

A plugin (conftest's `pytest_plugins`): any test can ask for `pg_url`, or `pg` (that URL
and a Redis client); `fresh_database()`
and `empty_database()` serve fixtures of other scopes or URL forms. Follows conftest's
need_redis: an unreachable server skips, or fails under INVENTORY_REQUIRE_SERVICES=1.
A PostgreSQL a test may stop and start is tests/private_pg.py's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import redis

from inventory_cache.connection import make_sync_redis
from inventory_cache.settings import Settings
from inventory_cache.worker import Worker
from persistence.db import libpq_url, migrate, normalize_url
from persistence.sink import make_sink
from tests.conftest import PG_URL, REDIS_URL, REQUIRE, need_redis
from tests.redis_state import flush_prefix


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
    from sqlalchemy.engine import make_url

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
