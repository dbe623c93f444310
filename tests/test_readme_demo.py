"""A new user's first hour, in one fresh clone (its own .venv, its own install): the
README's run command exactly as written, a reservation with the key it printed, then
the quickstart's tour exactly as printed (every curl, reconcile included) with each
answer checked against the one the document shows; and the demo's refusals (busy port,
a second demo on the same data) and its restart (the admin key reused)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
WILDCARD = "..."  # the quickstart's mark for a value that differs on every run


def readme_command(comment: str) -> str:
    """The line of the README's "Two commands" block whose comment starts with `comment`."""
    block = README.read_text().split("## Two commands", 1)[1].split("```bash", 1)[1]
    for line in block.split("```", 1)[0].splitlines():
        command, _, note = line.partition("#")
        if note.strip().startswith(comment):
            return command.strip()
    raise AssertionError(f"no '{comment}' command in the README")


def tour() -> tuple[str, list[tuple[str, Any]]]:
    """The quickstart's tour: its setup line, then each command with its expected answer."""
    text = QUICKSTART.read_text().split("## The tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL)
    (kind, setup), rest = blocks[0], blocks[1:]
    assert kind == "bash"
    steps = []
    for (kind, command), (answer_kind, answer) in zip(rest[::2], rest[1::2], strict=True):
        assert (kind, answer_kind) == ("bash", "json"), command
        steps.append((command.strip(), json.loads(answer)))
    return setup.strip(), steps


def matches(actual: Any, expected: Any) -> bool:
    if expected == WILDCARD:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(matches(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected) and type(actual) is type(expected)


def user_env(port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INVENTORY_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["INVENTORY_PORT"] = str(port)
    return env


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("clone") / "inventory-cache"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


class Demos:
    """Demos started in the clone; each is stopped (killed if need be) at the end."""

    def __init__(self, clone: Path) -> None:
        self.clone = clone
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, port: int, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["bash", "-c", " ".join([readme_command("run"), *args])],
            cwd=self.clone,
            env=user_env(port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def demos(fresh_clone: Path) -> Iterator[Demos]:
    d = Demos(fresh_clone)
    yield d
    d.close()


def wait_ready(proc: subprocess.Popen[str], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"demo exited early: {proc.stderr.read() if proc.stderr else ''}"
        )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"/readyz not 200 within {timeout_s}s")


def printed_key(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "demo closed its output before printing a key"
        if m := re.search(r"Admin key:\s+(\S+)", line):
            return m.group(1)


def stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C; returns what the demo said on standard error."""
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


def test_readme_run_command_serves_a_reservation_with_the_printed_key(demos: Demos) -> None:
    port = free_port()
    proc = demos.start(port)
    wait_ready(proc, port, timeout_s=420)
    key = printed_key(proc)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}

    before = httpx.get(f"{base}/v1/availability/phone-a", headers=auth).json()
    created = httpx.post(
        f"{base}/v1/reservations",
        headers=auth,
        json={"order_id": "readme-1", "lines": [{"sku": "phone-a", "qty": 2}]},
    )
    time.sleep(0.5)  # past the product page's near-cache staleness
    after = httpx.get(f"{base}/v1/availability/phone-a", headers=auth)
    unauthenticated = httpx.get(f"{base}/v1/stock/phone-a")

    assert before == {
        "sku": "phone-a",
        "available": 17,
        "in_stock": True,
        "locations": {"north": 10, "south": 5, "store-1": 2},
    }
    assert created.status_code == 201
    assert created.json()["lines"] == [{"sku": "phone-a", "qty": 2, "location": "north"}]
    assert after.json()["available"] == 15
    assert unauthenticated.status_code == 401
    said = stop(proc)
    assert "demo: stopped" in said
    assert "persists between runs" in said and "--reset" in said
    assert (demos.clone / ".demo" / "admin-key").read_text().strip() == key


def test_a_restart_reuses_the_admin_key_and_a_second_demo_or_busy_port_is_refused(
    demos: Demos,
) -> None:
    """Runs after the first test, on the data it left."""
    saved = (demos.clone / ".demo" / "admin-key").read_text().strip()
    port = free_port()
    first = demos.start(port)
    wait_ready(first, port, timeout_s=120)

    same_port = demos.start(port)
    same_data = demos.start(free_port())
    busy_said = same_port.communicate(timeout=60)[1]
    locked_said = same_data.communicate(timeout=60)[1]

    assert printed_key(first) == saved
    assert same_port.returncode == 2
    assert busy_said.splitlines() == [
        f"demo: port {port} on 127.0.0.1 is in use; choose another with "
        f"INVENTORY_PORT={port + 1} scripts/demo.sh (or --port {port + 1})"
    ]
    assert same_data.returncode == 2
    [locked_line] = locked_said.splitlines()
    assert re.fullmatch(
        rf"demo: \.demo/ is in use by another demo \(pid \d+, port {port}\): "
        "use that one, or stop it first",
        locked_line,
    )
    said = stop(first)
    assert f"admin key reused from {Path('.demo') / 'admin-key'}" in said


def test_the_quickstart_tour_runs_as_printed_on_a_reset_demo(demos: Demos) -> None:
    setup, steps = tour()
    assert any("/v1/reconcile" in command for command, _ in steps)
    assert "docs/quickstart.md" in README.read_text()
    port = free_port()
    proc = demos.start(port, "--reset")  # the earlier tests left orders and locks behind
    wait_ready(proc, port, timeout_s=120)

    for command, expected in steps:
        script = f"{setup}\n{command}".replace("localhost:8000", f"localhost:{port}")
        is_read = "-X POST" not in command and " -d " not in command
        deadline = time.monotonic() + (15 if is_read else 0)
        while True:
            done = subprocess.run(
                ["bash", "-c", script], cwd=demos.clone, capture_output=True, text=True
            )
            answer = json.loads(done.stdout) if done.stdout else None
            # the ledger is written a moment after each change: a read may ask again
            if matches(answer, expected) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert matches(answer, expected), f"{command}\n  answered {done.stdout}"

    said = stop(proc)
    assert "--reset: deleted the demo's data in .demo/" in said
