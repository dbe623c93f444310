"""A PostgreSQL cluster of the test's own (initdb, pg_ctl) on a free loopback port, so a
test can stop and start it as an outage would, without touching the machine's server.

The server refuses to run as root, so the commands run as the `postgres` user (`runuser`
when the tests run as root); the data directory lives under /tmp, which that user can
reach. `fsync=off` spares the disk: a stop, even `-m immediate`, is a crash of the server
process, not of the machine, so the operating system still holds every committed write.
`synchronous_commit` stays on: with it off, a crash would lose commits already reported
to the worker, which is a loss the service does not promise to survive.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api_support import free_port


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
