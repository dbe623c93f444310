"""Helpers shared by the benchmark scripts: loopback guard, percentiles, scratch databases.

The scripts import this as a sibling module (Python puts a script's own directory first
on `sys.path`), so each stays runnable as `python scripts/<name>.py`.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit


def require_loopback(url: str) -> None:
    """Refuse any target that is not this machine: load is only ever sent over loopback."""
    host = urlsplit(url).hostname
    if host is None:
        raise SystemExit(f"no host in {url!r}")
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise SystemExit(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_loopback:
            raise SystemExit(f"{url!r} resolves to {address}: only loopback targets are allowed")


def free_port() -> int:
    """A loopback TCP port free at the time of asking, for a server a bench starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not sorted_samples:
        return 0.0
    rank = max(0, min(len(sorted_samples) - 1, round(q / 100 * len(sorted_samples)) - 1))
    return sorted_samples[rank]


def latency_summary(samples_ms: Iterable[float]) -> dict[str, float]:
    s = sorted(samples_ms)
    return {f"p{q}": round(percentile(s, q), 2) for q in (50, 95, 99)}


def plain_dsn(dsn: str) -> str:
    return dsn.replace("postgresql+psycopg://", "postgresql://", 1)


def sibling_database(admin_dsn: str, name: str) -> str:
    """The URL of database `name` on the server of `admin_dsn`."""
    base, _, _ = plain_dsn(admin_dsn).partition("?")
    return base.rpartition("/")[0] + "/" + name


def recreate_database(admin_dsn: str, name: str) -> str:
    """Drop and create database `name` (a benchmark's scratch space); returns its URL."""
    import psycopg  # here, not at the top: load workers import this module and start fast

    with psycopg.connect(plain_dsn(admin_dsn), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return sibling_database(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(plain_dsn(admin_dsn), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _read_stat(pid: int | str) -> tuple[str, list[str]] | None:
    """`/proc/<pid>/stat`: the command name and the fields after it (field 3 onwards);
    None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    name_end = stat.rfind(")")
    return stat[stat.find("(") + 1 : name_end], stat[name_end + 2 :].split()


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime, stime


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far; ProcessLookupError once it
    is gone (a measurement over a process that died means nothing)."""
    stat = _read_stat(pid)
    if stat is None:
        raise ProcessLookupError(pid)
    return _cpu_ticks(stat[1]) / os.sysconf("SC_CLK_TCK")


def _live_cpu_seconds(counts: Callable[[str, list[str]], bool]) -> float:
    """CPU seconds (user + system) the live processes that `counts` (given each one's
    command name and stat fields) picks have used."""
    ticks = 0
    for pid in os.listdir("/proc"):
        stat = _read_stat(pid) if pid.isdigit() else None
        if stat and counts(*stat):
            ticks += _cpu_ticks(stat[1])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds the live processes of a process group have used: a server's own cost,
    which on a loaded 2-core machine moves far less than its rate."""
    return _live_cpu_seconds(lambda _, fields: int(fields[2]) == pgid)  # pgrp


def named_cpu_seconds(name: str) -> float:
    """CPU seconds the live processes called `name` have used (`postgres`: every process
    of the PostgreSQL server, its backends among them; a backend that exits takes its
    seconds with it, which the connection pools of the servers measured here do not do
    during a run)."""
    return _live_cpu_seconds(lambda comm, _: comm == name)


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have finished (a load
    generator's worker processes, once it has waited for them)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy since boot (`/proc/stat`)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = fh.readline().split()[1:9]
    busy = sum(int(x) for x in (user, nice, system, irq, softirq, steal))
    return busy / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where a load's CPU goes: each named part's CPU seconds over a run, per request.

    On a machine whose cores are full, throughput is the cores divided by the CPU a
    request costs every process together, so this split says what bounds a ratio of two
    rates where a profile of one process cannot. `meters` are cumulative CPU-second
    counters (a process group, every `postgres` process, Redis's `INFO cpu`, the load
    generator); the machine's busy time is read beside them, and what no meter claims is
    `other`."""

    def __init__(
        self,
        meters: Mapping[str, Callable[[], float]],
        machine: Callable[[], float] = machine_busy_seconds,
    ) -> None:
        self.meters = dict(meters)
        self.machine = machine

    def read(self) -> dict[str, float]:
        return {**{name: meter() for name, meter in self.meters.items()}, "": self.machine()}

    @staticmethod
    def per_request(
        before: Mapping[str, float], after: Mapping[str, float], requests: int
    ) -> dict[str, float]:
        """µs of CPU per request of each part between two `read`s, then `other` and `total`
        (the machine's busy time)."""
        spent = {name: after[name] - before[name] for name in before}
        machine = spent.pop("")
        out = {name: round(s * 1e6 / requests, 1) for name, s in spent.items()}
        out["other"] = round(max(0.0, machine - sum(spent.values())) * 1e6 / requests, 1)
        out["total"] = round(machine * 1e6 / requests, 1)
        return out
