"""Stand-ins for the systems around the service: a webhook receiver, and the WMS
simulator as a reconciliation source. A plugin (conftest's `pytest_plugins`): the
`receiver` fixture needs no import."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from wms_simulator import WmsSimulator

from inventory_cache.wms import WmsSnapshot, parse_json_snapshot


class Receiver:
    """A loopback HTTP server that records what it is sent and answers a scripted status."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answered in turn; 200 once exhausted
        self.redirect_to: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if outer.redirect_to:
                    self.send_header("Location", outer.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the test reads `calls` instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self) -> list[dict[str, Any]]:
        return [orjson.loads(c["body"]) for c in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class SimSource:
    """The simulator's stock as the service reads a WMS's JSON export."""

    def __init__(self, sim: WmsSimulator) -> None:
        self.sim = sim

    def describe(self) -> str:
        return "simulator"

    async def snapshot(self) -> WmsSnapshot:
        return parse_json_snapshot(orjson.dumps(self.sim.snapshot()), "simulator")
