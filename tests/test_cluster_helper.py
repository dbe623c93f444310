"""The local cluster helper, and the switch that puts the service on a cluster.

The helper's promise is that a cluster test run leaves no server and no file behind,
whether the cluster formed, failed to form, or the Python process running it was killed
(then the files go at the next run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio.cluster
import redis.cluster
from local_cluster import ClusterStartError, LocalCluster, LocalServers, port_free

from inventory_cache.connection import make_async_redis, make_sync_redis
from inventory_cache.engine import StockEngine
from inventory_cache.settings import Settings

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent: read its state.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_until_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_cluster_that_cannot_form_stops_its_servers_and_removes_its_files() -> None:
    cluster = LocalCluster(masters=2, replicas=0)  # redis-cli refuses fewer than 3 masters

    with pytest.raises(ClusterStartError, match="3 master"):
        cluster.start()

    assert cluster.procs == {}
    assert all(port_free(p) for p in cluster.ports)
    assert not cluster.workdir.exists()


def test_killed_run_leaves_no_server_and_the_next_run_removes_its_files() -> None:
    script = (
        "import sys; from local_cluster import LocalCluster\n"
        "c = LocalCluster(replicas=0); c.start()\n"
        "print(c.workdir, *(p.pid for p in c.procs.values()), flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(  # leaving the block closes its pipes
        [sys.executable, "-c", script],
        cwd=ROOT / "scripts",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            workdir, *pids = child.stdout.readline().split()
            assert len(pids) == 3 and all(alive(int(p)) for p in pids)

            child.send_signal(signal.SIGKILL)  # no finally, no atexit: only the kernel helps
            child.wait()

            assert wait_until_gone([int(p) for p in pids]) == []
            assert Path(workdir).exists()
            LocalServers().stop()  # any later helper sweeps what the dead one left
            assert not Path(workdir).exists()
        finally:
            child.kill()
            child.wait()
            shutil.rmtree(workdir, ignore_errors=True)


async def test_cluster_setting_from_the_environment_selects_the_cluster_clients(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("INVENTORY_REDIS_URL", local_cluster.url)
    monkeypatch.setenv("INVENTORY_REDIS_CLUSTER", "true")
    monkeypatch.setenv("INVENTORY_REDIS_PREFIX", prefix)
    settings = Settings()
    sync = make_sync_redis(settings)
    client = make_async_redis(settings)
    engine = StockEngine(client, settings)
    ready = [engine.keys.ready(g) for g in engine.keys.all_groups()]
    try:
        assert isinstance(sync, redis.cluster.RedisCluster)
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        assert await engine.check_ready() is False
        await engine.mark_ready()
        assert await engine.check_ready() is True
        # Every master holds some groups' markers, and the blocking client reads them all.
        nodes = {sync.get_node_from_key(k).name for k in ready}
        assert len(nodes) == 3
        assert all(sync.exists(k) for k in ready)
    finally:
        sync.delete(*ready)
        sync.close()
        await client.aclose()
