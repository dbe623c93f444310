"""A new user's first five minutes: the README's run command, exactly as written, in a
fresh clone (its own .venv, its own install), then a reservation over HTTP with the key
it printed, then Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_command(comment: str) -> str:
    """The line of the README's "Two commands" block whose comment starts with `comment`."""
    block = README.read_text().split("## Two commands", 1)[1].split("```bash", 1)[1]
    for line in block.split("```", 1)[0].splitlines():
        command, _, note = line.partition("#")
        if note.strip().startswith(comment):
            return command.strip()
    raise AssertionError(f"no '{comment}' command in the README")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    target = tmp_path / "inventory-cache"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


@pytest.fixture
def demo(fresh_clone: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INVENTORY_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["INVENTORY_PORT"] = str(port)
    proc = subprocess.Popen(
        ["bash", "-c", readme_command("run")],
        cwd=fresh_clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    yield proc, port
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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


def test_readme_run_command_serves_a_reservation_with_the_printed_key(
    demo: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = demo
    wait_ready(proc, port, timeout_s=420)
    assert proc.stdout is not None
    key = ""
    while not key:
        line = proc.stdout.readline()
        assert line, "demo closed its output before printing a key"
        if m := re.search(r"Admin key:\s+(\S+)", line):
            key = m.group(1)
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

    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    assert "demo: stopped" in proc.stderr.read()
