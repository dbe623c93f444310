"""The machine's Redis and PostgreSQL as the tests reach them, and settings aimed at them.

With INVENTORY_REQUIRE_SERVICES=1 (CI), an unreachable server fails the run instead of
skipping the tests that need it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import redis

from inventory_cache.settings import Settings

REDIS_URL = os.environ.get("INVENTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("INVENTORY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("INVENTORY_REQUIRE_SERVICES") == "1"


def _redis_up() -> bool:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


REDIS_UP = _redis_up()


def need_redis() -> None:
    if not REDIS_UP:
        if REQUIRE:
            pytest.fail(f"Redis at {REDIS_URL} is required (INVENTORY_REQUIRE_SERVICES=1)")
        pytest.skip(f"no Redis at {REDIS_URL}")


def make_settings(prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "slot_groups": 16,
        "location_priority": "north,south",
    }
    values.update(overrides)
    return Settings(**values)
