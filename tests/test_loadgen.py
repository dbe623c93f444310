"""The load generator measures what it claims and catches an oversell.

Tiny bounded runs (a second, a few connections) of every scenario against the PostgreSQL
baseline served by a real uvicorn on loopback, and a flash sale against a deliberately
broken server that accepts every buyer: the check must fail there and pass on the baseline.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import loadgen
import pytest
import uvicorn
from baseline.app import BaselineSettings, create_app
from fastapi import FastAPI, Request

from tests.support.postgres import empty_database


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a loopback port from a thread; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture
async def baseline_url() -> AsyncIterator[str]:
    with empty_database() as dsn:
        app = create_app(BaselineSettings(database_url=dsn, pool_size=4))
        with serve(app) as url:
            yield url


def overselling_app() -> FastAPI:
    """A broken stock service: every reservation succeeds, whatever the stock."""
    app = FastAPI()
    state = {"on_hand": 0, "locked": 0}

    @app.get("/v1/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/inbound", status_code=200)
    async def inbound(request: Request) -> dict[str, Any]:
        state["on_hand"] += (await request.json())["qty"]
        return {"on_hand": state["on_hand"]}

    @app.post("/v1/reservations", status_code=201)
    async def reserve() -> dict[str, str]:
        state["locked"] += 1
        return {"status": "active"}

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str) -> dict[str, Any]:
        return {"sku": sku, "locations": {"north": {**state, "safety_stock": 0, "available": 0}}}

    return app


def tiny(target: str, scenario: str, **overrides: Any) -> loadgen.Config:
    values: dict[str, Any] = {
        "target": target,
        "scenario": scenario,
        "processes": 2,
        "connections": 4,
        "duration": 1.0,
        "max_requests": 400,
        "skus": 20,
        "buyers": 120,
        "units": 30,
    }
    values.update(overrides)
    return loadgen.Config(**values)


@pytest.mark.parametrize("scenario", ["ping", "availability", "checkout", "mixed"])
def test_each_scenario_reports_throughput_latency_and_a_chart(
    baseline_url: str, scenario: str, tmp_path: Path
) -> None:
    chart = tmp_path / f"{scenario}.png"

    report = loadgen.run(tiny(baseline_url, scenario), str(chart))

    assert report["errors"] == 0, report["statuses"]
    assert 0 < report["requests"] <= 400
    assert report["requests_per_s"] > 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    expected_ops = {
        "ping": {"ping"},
        "availability": {"availability"},
        "checkout": {"reserve"},
        "mixed": {"availability"},
    }[scenario]
    assert expected_ops <= set(report["by_op"])
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_checkout_settles_each_reservation_it_made(baseline_url: str) -> None:
    report = loadgen.run(tiny(baseline_url, "checkout", ship_ratio=0.5))

    ops = report["by_op"]
    assert (
        ops["reserve"]["count"]
        == ops.get("ship", {"count": 0})["count"] + ops.get("cancel", {"count": 0})["count"]
    )
    assert set(report["statuses"]) <= {"reserve 201", "ship 200", "cancel 200"}


def test_open_loop_keeps_the_offered_rate(baseline_url: str) -> None:
    report = loadgen.run(tiny(baseline_url, "availability", rate=100.0, duration=2.0))

    assert 150 <= report["requests"] <= 210
    assert report["offered_rate"] == 100.0
    assert 75 <= report["ops_per_s"] <= 105


def test_flash_sale_on_the_baseline_sells_every_unit_once(baseline_url: str) -> None:
    report = loadgen.run(tiny(baseline_url, "flash-sale", duration=10.0))

    fs = report["flash_sale"]
    assert (fs["sold"], fs["locked"], fs["oversold"], fs["ok"]) == (30, 30, 0, True)
    assert report["statuses"] == {"reserve 201": 30, "reserve 409": 90}
    assert fs["sold_per_s"] > 0


def test_flash_sale_check_catches_a_server_that_oversells(tmp_path: Path) -> None:
    with serve(overselling_app()) as url:
        report = loadgen.run(tiny(url, "flash-sale", duration=10.0))
        status = loadgen.main(
            [
                "--target",
                url,
                "--scenario",
                "flash-sale",
                "--buyers",
                "20",
                "--units",
                "5",
                "--processes",
                "1",
                "--connections",
                "2",
                "--duration",
                "5",
                "--json",
                str(tmp_path / "fs.json"),
            ]
        )

    fs = report["flash_sale"]
    assert (fs["sold"], fs["locked"], fs["oversold"], fs["ok"]) == (120, 120, 90, False)
    assert status == 1


def test_targets_other_than_loopback_are_refused() -> None:
    with pytest.raises(SystemExit, match="only loopback"):
        loadgen.run(tiny("http://192.0.2.1:80", "ping"))


def test_zipf_sampler_puts_most_views_on_the_first_skus() -> None:
    draw = loadgen.zipf_sampler(1000, 1.1, random.Random(7))

    ranks = [draw() for _ in range(20_000)]

    assert all(0 <= r < 1000 for r in ranks)
    top10 = sum(r < 10 for r in ranks) / len(ranks)
    assert 0.35 < top10 < 0.6  # 1/k^1.1 over 1000 ranks: the first 10 take about 46%
