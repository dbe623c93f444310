"""A throw-away PostgreSQL database per test, on the machine's server (see conftest)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import pytest

from tests.conftest import PG_URL, REQUIRE


def _admin_dsn() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)


def need_postgres() -> None:
    try:
        psycopg.connect(_admin_dsn(), connect_timeout=2).close()
    except psycopg.OperationalError:
        if REQUIRE:
            pytest.fail(f"PostgreSQL at {PG_URL} is required (INVENTORY_REQUIRE_SERVICES=1)")
        pytest.skip(f"no PostgreSQL at {PG_URL}")


@asynccontextmanager
async def scratch_database(tag: str) -> AsyncIterator[str]:
    """Create an empty database, yield its URL, drop it (and its sessions) afterwards."""
    need_postgres()
    name = f"{tag}_{uuid.uuid4().hex[:10]}"
    admin = await psycopg.AsyncConnection.connect(_admin_dsn(), autocommit=True)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = _admin_dsn().rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
