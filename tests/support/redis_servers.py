"""Fixture plugin: Redis servers a test starts for itself (scripts/local_cluster.py), for
what the machine's shared server cannot show or must not see.

`local_cluster`: a real 3-master Redis Cluster, started once per session (per xdist
worker) and only when a test asks for it. `private_redis`: a redis-server of the test
alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis
from local_cluster import LocalCluster, LocalServers

from tests.support.services import REQUIRE


def need_redis_server() -> None:
    """Skip without redis-server and redis-cli, or fail under INVENTORY_REQUIRE_SERVICES=1."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if REQUIRE:
            pytest.fail("redis-server and redis-cli are required: tests start their own")
        pytest.skip("redis-server / redis-cli not installed")


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """One cluster per test session (per xdist worker); stopped (servers and files) however
    it ends."""
    need_redis_server()
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_redis() -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server of this test alone: its URL and an admin client.

    For what would reach every other client of the shared server: CONFIG SET, SCRIPT FLUSH
    (another test, in this run or a parallel worker, would reload or lose its scripts).
    """
    need_redis_server()
    servers = LocalServers(1)
    servers.start()
    admin = servers.admin(servers.ports[0])
    try:
        yield servers.url, admin
    finally:
        admin.close()
        servers.stop()
