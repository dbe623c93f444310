"""A real Redis Cluster on loopback ports, for the cluster tests and the cluster benchmark.

Why real servers: what must hold on Redis Cluster (one slot per script, MOVED/ASK/TRYAGAIN
while slots move, NOSCRIPT on a promoted replica) is decided by `redis-server
--cluster-enabled yes` and the client together, so a mock would only show our guess.

`LocalCluster` starts 3 masters, each with one replica (so a test can promote a replica
and meet an empty script cache), joins them with `redis-cli --cluster create`, and waits
until every node agrees on the topology. It owns its processes and its directory: `stop()`
ends the servers it started, by pid, and removes the directory; the servers also get
SIGKILL from the kernel if the Python process that started them dies (PR_SET_PDEATHSIG),
so not even a killed test run leaves a cluster running; the directory it leaves is removed
by the next `LocalServers` created on the machine. `LocalServers`, its base, starts plain
servers the same way (the cluster benchmark's single-Redis side). The tests get both as
fixtures (tests/support/redis_servers.py); scripts import this module as a sibling.

Ports come from 7100-7199 (and their bus ports, +10000), chosen free at start; several
test runs on one machine each get their own cluster.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from inventory_cache.connection import make_async_redis
from inventory_cache.settings import Settings

PORTS = range(7100, 7200)
BUS_OFFSET = 10000
DIR_PREFIX = "inv-redis-"
OWNER_LOCK = "owner.lock"
_PR_SET_PDEATHSIG = 1


class ClusterStartError(Exception):
    """The servers did not come up or did not form a healthy cluster in time."""


@dataclass(frozen=True, slots=True)
class Node:
    """One line of CLUSTER NODES: who serves which slots, and who replicates whom."""

    id: str
    port: int
    master: bool
    master_id: str | None
    slots: tuple[range, ...]

    def owns(self, slot: int) -> bool:
        return any(slot in r for r in self.slots)


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def port_free(port: int) -> bool:
    for p in (port, port + BUS_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def remove_orphaned_dirs() -> None:
    """Remove the directories of servers whose Python process died without `stop()`.

    SIGKILL, or the SIGTERM of a `timeout`, ends pytest without running fixture
    finalizers: the servers die with it (PR_SET_PDEATHSIG), but their directory stays.
    Each directory holds an flock for as long as its owner lives, so one that can be
    locked has no owner left.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            with (path / OWNER_LOCK).open("r+") as lock:  # never creates it
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # owner alive (lock held), or not created yet, or just removed
            continue


def parse_nodes(text: str) -> list[Node]:
    """Parse CLUSTER NODES; open slots (`[slot->-id]`) are left out, owned ranges kept."""
    nodes = []
    for line in text.strip().splitlines():
        fields = line.split()
        flags = fields[2].split(",")
        slots = []
        for spec in fields[8:]:
            if spec.startswith("["):
                continue
            lo, _, hi = spec.partition("-")
            slots.append(range(int(lo), int(hi or lo) + 1))
        nodes.append(
            Node(
                id=fields[0],
                port=int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                master="master" in flags,
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return nodes


class LocalServers:
    """`count` redis-server processes on free loopback ports, and the directory they use.

    The object owns both: `stop()` ends the servers it started, by pid, and removes the
    directory, and `start()` does so itself if it fails halfway.
    """

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        remove_orphaned_dirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        # Held for this object's life, released by the kernel when the process dies. Locked
        # under another name first: a sweep running meanwhile must never find it unlocked.
        self._owner = (self.workdir / f"{OWNER_LOCK}.new").open("w")
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (self.workdir / f"{OWNER_LOCK}.new").rename(self.workdir / OWNER_LOCK)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the servers, then `_ready()`; on any failure, undo everything."""
        try:
            for _attempt in range(3):
                self.ports = self._pick_ports(self.count)
                if self._spawn_all():
                    break
                self._kill_all()
            else:
                raise ClusterStartError("could not start redis-server on free ports")
            self._ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the servers this object started, then remove its directory."""
        self._kill_all()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._owner.close()

    def admin(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one server, for CLUSTER, CONFIG and INFO."""
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        client.set_response_callback("CLUSTER NODES", lambda raw, **_: raw.decode())
        return client

    def _options(self, port: int) -> dict[str, object]:
        return {
            "port": port,
            "bind": "127.0.0.1",
            "dir": self.workdir,
            "dbfilename": f"dump-{port}.rdb",
            "save": "",
            "appendonly": "no",
        }

    def _ready(self, timeout: float) -> None:
        """What must hold, once every server answers PING, before `start()` returns."""

    def _pick_ports(self, n: int) -> list[int]:
        candidates = [p for p in PORTS if port_free(p)]
        if len(candidates) < n:
            raise ClusterStartError(f"fewer than {n} free ports in {PORTS}")
        start = random.randrange(len(candidates) - n + 1)
        return candidates[start : start + n]

    def _spawn_all(self) -> bool:
        for port in self.ports:
            argv = ["redis-server"]
            for name, value in self._options(port).items():
                argv += [f"--{name}", str(value)]
            with (self.workdir / f"{port}.log").open("wb") as log:
                self.procs[port] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
                )
        deadline = time.monotonic() + 5
        pending = set(self.ports)
        while pending and time.monotonic() < deadline:
            for port in list(pending):
                if self.procs[port].poll() is not None:
                    return False  # lost the race for the port to another process
                with contextlib.suppress(redis.RedisError), self.admin(port) as c:
                    # A server that took the port between `_pick_ports` and our bind
                    # (another test run, another xdist worker) answers PING as well.
                    if int(c.info("server")["process_id"]) != self.procs[port].pid:
                        return False
                    pending.discard(port)
            time.sleep(0.05)
        return not pending

    def _kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


class LocalCluster(LocalServers):
    """3 masters (+1 replica each) joined into a cluster; see the module docstring."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        super().__init__(masters * (1 + replicas))
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms

    def async_client(self) -> Any:
        """The service's own cluster client (`INVENTORY_REDIS_CLUSTER=true`) for this cluster."""
        return make_async_redis(Settings(redis_url=self.url, redis_cluster=True))

    def _options(self, port: int) -> dict[str, object]:
        return {
            **super()._options(port),
            "cluster-enabled": "yes",
            "cluster-config-file": f"nodes-{port}.conf",
            "cluster-node-timeout": self.node_timeout_ms,
            "repl-diskless-sync-delay": 0,  # replicas sync at once, not after 5 s
        }

    def _ready(self, timeout: float) -> None:
        self.cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in self.ports),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            timeout=timeout,
        )
        self.wait_healthy(timeout)

    # ------------------------------------------------------------------ inspection
    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run redis-cli; its output, or ClusterStartError with the output if it failed."""
        done = subprocess.run(
            ["redis-cli", *args], capture_output=True, timeout=timeout, check=False
        )
        out = done.stdout.decode() + done.stderr.decode()
        if done.returncode != 0:
            raise ClusterStartError(f"redis-cli {' '.join(args)} failed:\n{out}")
        return out

    def nodes(self) -> list[Node]:
        """The topology as a live node sees it."""
        for port in self.ports:
            if port in self.procs and self.procs[port].poll() is None:
                with contextlib.suppress(redis.RedisError), self.admin(port) as c:
                    return parse_nodes(c.execute_command("CLUSTER NODES"))
        raise ClusterStartError("no node answers")

    def primaries(self) -> list[Node]:
        return [n for n in self.nodes() if n.master and n.slots]

    def owner(self, slot: int) -> Node:
        return next(n for n in self.primaries() if n.owns(slot))

    def replica_of(self, master: Node) -> Node:
        return next(n for n in self.nodes() if n.master_id == master.id)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every node says cluster_state:ok, slots agree and every replica is in sync."""
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            problem = self._problem()
            if not problem:
                return
            time.sleep(0.1)
        raise ClusterStartError(f"cluster not healthy after {timeout}s: {problem}")

    def _problem(self) -> str:
        views = set()
        for port in self.ports:
            try:
                with self.admin(port) as c:
                    if c.execute_command("CLUSTER INFO")["cluster_state"] != "ok":
                        return f"{port}: cluster_state not ok"
                    repl = c.info("replication")
                    if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                        return f"{port}: replica link down"
                    text = c.execute_command("CLUSTER NODES")
            except redis.RedisError as exc:
                return f"{port}: {exc}"
            if any(flag in text for flag in ("fail", "handshake", "noaddr", "disconnected")):
                return f"{port} sees a node failing or joining:\n{text}"
            views.add(frozenset(parse_nodes(text)))
        if len(views) != 1:
            return "nodes disagree on roles or slots"
        (view,) = views
        masters = [n for n in view if n.master and n.slots]
        if any(sum(r.master_id == m.id for r in view) != self.replicas for m in masters):
            return "a master lacks its replicas"
        try:
            check = self.cli("--cluster", "check", f"127.0.0.1:{self.ports[0]}", timeout=10)
        except ClusterStartError as exc:
            return str(exc)
        if "[OK] All 16384 slots covered" not in check or "[WARNING]" in check:
            return check
        return ""

    # ------------------------------------------------------------------ topology changes
    def reshard_args(self, source: Node, target: Node, slots: int) -> list[str]:
        """redis-cli arguments that move the `slots` lowest slots of source to target."""
        return [
            "--cluster",
            "reshard",
            f"127.0.0.1:{self.ports[0]}",
            "--cluster-from",
            source.id,
            "--cluster-to",
            target.id,
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        ]

    def begin_migration(self, slot: int, source: Node, target: Node) -> None:
        """Open a slot move as redis-cli does (IMPORTING, then MIGRATING), moving no key yet."""
        with self.admin(target.port) as c:
            c.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.id)
        with self.admin(source.port) as c:
            c.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.id)

    def finish_migration(self, slot: int, source: Node, target: Node) -> None:
        """MIGRATE every key of the slot, then give the slot to target on every master."""
        with self.admin(source.port) as c:
            while keys := c.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
                c.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        masters = [
            target,
            source,
            *(n for n in self.primaries() if n.id not in {target.id, source.id}),
        ]
        for node in masters:
            with self.admin(node.port) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", target.id)

    def abort_migration(self, slot: int, source: Node, target: Node) -> None:
        """Close an open slot move without moving anything."""
        for node in (source, target):
            with self.admin(node.port) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "STABLE")

    def failover(self, replica: Node, timeout: float = 30.0) -> None:
        """Promote a replica with CLUSTER FAILOVER (its master steps down, in sync, no loss).

        Redis abandons a manual failover that has not completed in 5 s (a busy machine
        can miss that), so it is asked again until the replica is master or time is up.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.admin(replica.port) as c:
                c.execute_command("CLUSTER FAILOVER")
            attempt_ends = min(deadline, time.monotonic() + 6)
            while time.monotonic() < attempt_ends:
                if any(n.id == replica.id and n.master for n in self.nodes()):
                    self.wait_healthy(timeout)
                    return
                time.sleep(0.05)
        raise ClusterStartError(f"replica {replica.port} was not promoted")
