"""A warehouse system (WMS) stand-in for demos and tests of reconciliation.

It keeps its own stock, applies its own receipts and shipments first and reports them to
the inventory service afterwards (an outbox, as a real WMS integration does), and can
drift: change its stock silently, as damage nobody reported does. It serves the snapshot
that `inventory_cache.wms.HttpJsonWms` reads on loopback (`GET /snapshot`) and/or writes
the CSV export that `CsvFileWms` reads.

    python scripts/wms_simulator.py --skus 100 --drift 7 --port 8099 \
        --api http://127.0.0.1:8000 --api-key "$ADMIN_KEY" --csv /tmp/wms.csv

seeds the catalogue on both sides, drifts 7 SKUs, then keeps receiving and shipping
(reserving each order through the API first, as the shop would) every `--interval` s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import ipaddress
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import orjson

from inventory_cache.errors import InvalidState, NotFound

Clock = Callable[[], int]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """A movement applied in the WMS, waiting in its outbox to be reported to us."""

    kind: Literal["inbound", "ship"]
    ref: str  # inbound ref, or the order id of a shipment
    lines: tuple[tuple[str, str, int], ...]  # (sku, location, qty)
    at: int  # when the WMS applied it, ms


class Sink(Protocol):
    """Where deliveries go: the engine in-process (tests) or the HTTP API (demos)."""

    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> None: ...

    async def ship(self, order_id: str) -> None:
        """Report a shipped order. An order this service does not know (404: not an online
        order) or no longer holds (409: expired or cancelled) is acknowledged anyway: the
        goods left, and the difference is exactly what reconciliation will report."""


class WmsSimulator:
    def __init__(self, clock: Clock = wall_ms) -> None:
        self.clock = clock
        self.stock: dict[tuple[str, str], int] = {}
        self.outbox: list[Delivery] = []
        self._lock = threading.Lock()  # the HTTP thread reads while the loop writes

    def seed(self, sku: str, location: str, on_hand: int) -> None:
        """Opening stock, already known to both sides (no delivery)."""
        with self._lock:
            self.stock[(sku, location)] = on_hand

    def receive(self, *, ref: str, sku: str, location: str, qty: int) -> None:
        with self._lock:
            self.stock[(sku, location)] = self.stock.get((sku, location), 0) + qty
            self.outbox.append(Delivery("inbound", ref, ((sku, location, qty),), self.clock()))

    def ship_order(self, order_id: str, lines: list[tuple[str, str, int]]) -> None:
        with self._lock:
            for sku, loc, qty in lines:
                self.stock[(sku, loc)] = self.stock.get((sku, loc), 0) - qty
            self.outbox.append(Delivery("ship", order_id, tuple(lines), self.clock()))

    def drift(self, sku: str, location: str, delta: int) -> None:
        """A change nobody reports: the kind of difference reconciliation exists to find."""
        with self._lock:
            self.stock[(sku, location)] = self.stock.get((sku, location), 0) + delta

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "taken_at": self.clock(),
                "items": [
                    {"sku": s, "location": loc, "on_hand": n}
                    for (s, loc), n in sorted(self.stock.items())
                ],
                "in_flight": [
                    {
                        "ref": d.ref,
                        "sku": s,
                        "location": loc,
                        "delta": -q if d.kind == "ship" else q,
                        "at": d.at,
                    }
                    for d in self.outbox
                    for s, loc, q in d.lines
                ],
            }

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """The nightly export: written beside the target and renamed, so readers never see
        half a file and its modification time is that of the complete snapshot."""
        target = Path(path)
        snap = self.snapshot()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(f"# taken_at={snap['taken_at']}\n")
            w = csv.writer(f)
            w.writerow(["sku", "location", "on_hand"])
            for it in snap["items"]:
                w.writerow([it["sku"], it["location"], it["on_hand"]])
        os.replace(tmp, target)

    async def deliver(self, sink: Sink, limit: int | None = None) -> int:
        """Report outbox entries in order; one leaves the outbox only once it was accepted."""
        sent = 0
        while limit is None or sent < limit:
            with self._lock:
                if not self.outbox:
                    break
                d = self.outbox[0]
            if d.kind == "inbound":
                sku, loc, qty = d.lines[0]
                await sink.inbound(ref=d.ref, sku=sku, location=loc, qty=qty)
            else:
                await sink.ship(d.ref)
            with self._lock:
                self.outbox.remove(d)
            sent += 1
        return sent


class EngineSink:
    """Delivers straight into a `StockEngine` (tests, the embedded demo)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> None:
        await self.engine.inbound(ref=ref, sku=sku, location=location, qty=qty)

    async def ship(self, order_id: str) -> None:
        with contextlib.suppress(NotFound, InvalidState):  # see Sink.ship
            await self.engine.ship(order_id)


class HttpSink:
    """Delivers through the HTTP API with a key holding the `warehouse` scope."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> None:
        body = {"ref": ref, "sku": sku, "location": location, "qty": qty}
        (await self.client.post("/v1/inbound", json=body)).raise_for_status()

    async def ship(self, order_id: str) -> None:
        resp = await self.client.post(f"/v1/reservations/{order_id}/ship")
        if resp.status_code not in (404, 409):  # see Sink.ship
            resp.raise_for_status()


def serve(sim: WmsSimulator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve `GET /snapshot` (JSON) and `GET /snapshot.csv` on a loopback address only."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("the simulator serves on loopback only")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            snap = sim.snapshot()
            if self.path == "/snapshot":
                body, ctype = orjson.dumps(snap), "application/json"
            elif self.path == "/snapshot.csv":
                rows = [f"# taken_at={snap['taken_at']}", "sku,location,on_hand"]
                rows += [f"{i['sku']},{i['location']},{i['on_hand']}" for i in snap["items"]]
                body, ctype = ("\n".join(rows) + "\n").encode(), "text/csv"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a reconciliation every minute is not worth a log line each."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True, name="wms-sim").start()
    return server


async def _run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    sim = WmsSimulator()
    skus = [f"SIM-{i:05d}" for i in range(args.skus)]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    client = httpx.AsyncClient(base_url=args.api, headers=headers, timeout=10) if args.api else None
    sink = HttpSink(client) if client else None
    for sku in skus:
        sim.receive(ref=f"seed-{sku}", sku=sku, location=args.location, qty=args.on_hand)
    if sink:
        await sim.deliver(sink)
    else:
        sim.outbox.clear()
    drifted = rng.sample(skus, min(args.drift, len(skus)))
    for i, sku in enumerate(drifted):
        sim.drift(sku, args.location, (1 if i % 2 else -1) * rng.randint(1, 5))
    print(f"drifted: {', '.join(drifted)}", file=sys.stderr)
    server = serve(sim, port=args.port) if args.port is not None else None
    if server:
        print(f"snapshot at http://127.0.0.1:{server.server_address[1]}/snapshot", file=sys.stderr)
    n = 0
    while True:
        if args.csv:
            sim.write_csv(args.csv)
        if client and sink:
            n += 1
            sku = rng.choice(skus)
            if rng.random() < 0.5:
                sim.receive(ref=f"rcv-{n}", sku=sku, location=args.location, qty=rng.randint(1, 5))
            else:
                order = {
                    "order_id": f"sim-{n}",
                    "lines": [{"sku": sku, "qty": 1, "location": args.location}],
                }
                if (await client.post("/v1/reservations", json=order)).status_code == 201:
                    sim.ship_order(f"sim-{n}", [(sku, args.location, 1)])
            await asyncio.sleep(args.interval)  # the outbox lags, as a real one does
            await sim.deliver(sink)
        else:
            await asyncio.sleep(args.interval)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--skus", type=int, default=100)
    p.add_argument("--location", default="north")
    p.add_argument("--on-hand", type=int, default=50)
    p.add_argument("--drift", type=int, default=7, help="SKUs to drift silently, both ways")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=None, help="serve the snapshot on loopback")
    p.add_argument("--csv", default=None, help="write the CSV export here, every interval")
    p.add_argument("--api", default=None, help="the inventory service to report to")
    p.add_argument("--api-key", default=os.environ.get("INVENTORY_API_KEY"))
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))


if __name__ == "__main__":
    main()
