"""The console script as an operator meets it: `--version`, readable help, and the
commands that act on a deployment refusing a throwaway in-process Redis."""

from __future__ import annotations

import os
import socket
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.api import CLI

DEPLOYMENT_COMMANDS = ["serve", "worker", "scheduler", "verify", "warmup", "reconcile"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_")}
    env.update(extra)
    return env


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", DEPLOYMENT_COMMANDS)
def test_deployment_command_refuses_the_embedded_redis_in_one_line(
    command: str, tmp_path: Path
) -> None:
    done = cli(tmp_path, command)

    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{command}: INVENTORY_REDIS_URL is not set")
    assert "INVENTORY_ALLOW_EMBEDDED_REDIS=true" in line
    assert list(tmp_path.iterdir()) == []  # refused before touching anything


def test_the_embedded_redis_is_used_when_asked_for_explicitly(tmp_path: Path) -> None:
    database = f"sqlite+pysqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert cli(tmp_path, "migrate", INVENTORY_DATABASE_URL=database).returncode == 0

    done = cli(
        tmp_path, "warmup", INVENTORY_DATABASE_URL=database, INVENTORY_ALLOW_EMBEDDED_REDIS="true"
    )

    assert done.returncode == 0, done.stderr
    assert '"skus": 0' in done.stdout or '"skus":0' in done.stdout


def test_version_option_prints_the_installed_version(tmp_path: Path) -> None:
    done = cli(tmp_path, "--version")

    assert (done.returncode, done.stdout) == (0, f"inventory-cache {version('inventory-cache')}\n")


def test_help_shows_flags_as_on_off_switches_and_whole_sentences(tmp_path: Path) -> None:
    helps = {
        command: cli(tmp_path, *command.split(), "--help").stdout
        for command in ["", "keys", *DEPLOYMENT_COMMANDS, "migrate", "demo", "keys create"]
    }

    for command, text in helps.items():
        assert "<bool>" not in text, command
    assert "--if-empty / --no-if-empty" in helps["warmup"]
    assert "--reset" in helps["demo"]
    for overview in (helps[""], helps["keys"]):
        listed = overview.split("Commands:\n", 1)[1].splitlines()
        assert listed and all(line.rstrip().endswith(".") for line in listed), listed


def test_demo_reset_leaves_configured_servers_alone(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = cli(
        tmp_path,
        "demo",
        "--reset",
        INVENTORY_PORT=str(port),
        INVENTORY_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test",
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "demo: --reset only clears the embedded demo; INVENTORY_REDIS_URL or "
        "INVENTORY_DATABASE_URL is set, so clear those servers yourself"
    ]
