#!/usr/bin/env python
"""HTTP load generator for the stock API (ours or the PostgreSQL baseline), loopback only.

Scenarios, each bounded by `--duration` and `--max-requests`:

- `ping`: `GET /v1/ping`, the trivial JSON route: the server's ceiling.
- `availability`: product pages, `GET /v1/availability/{sku}` with Zipf-distributed SKUs.
- `checkout`: `POST /v1/reservations` of one unit, then ship or cancel it.
- `flash-sale`: N buyers race for M units of one fresh SKU, one reservation each; at the
  end the stock route must show no more units locked than there were (no oversell), and
  exactly as many as the buyers were told they got. With `--limit L` the SKU gets a
  per-customer limit of L (`PUT /v1/limits`, so the key needs the admin scope), every
  buyer is a customer sending `--tries` reservations of one unit, and no buyer may end
  with more than L.
- `mixed`: 95% availability reads, 5% checkouts; with `--rate`, an open loop at a fixed
  offered load (latency counted from the intended send time, so queueing shows).

A small raw HTTP/1.1 keep-alive client (asyncio + uvloop) runs in `--processes` OS
processes with `--connections` each: on two cores a heavy client would steal the CPU the
server needs. Prints a JSON report (requests/s, p50/p95/p99 per operation, errors), and
with `--chart` draws throughput over time and latency percentiles in a PNG.

    .venv/bin/python scripts/loadgen.py --target http://127.0.0.1:8000 \\
        --scenario flash-sale --buyers 2000 --units 100 --api-key "$KEY" --chart fs.png

Exit status 1 when a flash sale oversold (or its books do not balance).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from benchlib import latency_summary, require_loopback

SCENARIOS = ("ping", "availability", "checkout", "flash-sale", "mixed")
MAX_DURATION_S = 300.0
MAX_PROCESSES = 16
REQUEST_TIMEOUT_S = 10.0
# Requests an operation may send: a checkout is a reservation, then its ship or cancel.
REQUESTS_PER_OP = {"ping": 1, "availability": 1, "checkout": 2}


@dataclass
class Config:
    target: str
    scenario: str
    processes: int = 2
    connections: int = 32
    duration: float = 5.0
    max_requests: int = 1_000_000
    rate: float = 0.0  # total offered ops/s (open loop); 0: closed loop
    skus: int = 1000
    zipf: float = 1.1
    sku_prefix: str = "LG"
    location: str = "north"
    ship_ratio: float = 0.5
    read_ratio: float = 0.95
    buyers: int = 2000
    units: int = 100
    limit: int = 0  # flash sale: per-customer limit on the SKU (0: none)
    tries: int = 1  # flash sale: reservations each buyer sends
    api_key: str = ""
    label: str = ""
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    start_at: float = 0.0
    seed_stock: bool = True


# --------------------------------------------------------------------------- client
class HttpConnection:
    """One HTTP/1.1 keep-alive connection; reconnects on the next request after a failure."""

    def __init__(self, host: str, port: int, api_key: str) -> None:
        self.host, self.port = host, port
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.headers = f"Host: {host}:{port}\r\n{auth}".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self._exchange(method, path, body)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.headers
        if body is None:
            self.writer.write(head + b"\r\n")
        else:
            payload = json.dumps(body, separators=(",", ":")).encode()
            self.writer.write(
                head
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
                + payload
            )
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        if b"transfer-encoding: chunked" in lower:
            data = await self._chunked()
        else:
            at = lower.find(b"content-length:")
            size = int(lower[at + 15 : lower.index(b"\r\n", at)]) if at >= 0 else 0
            data = await self.reader.readexactly(size)
        if b"connection: close" in lower:
            self.close()
        return status, data

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])


def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[], int]:
    """Ranks 0..n-1 with P(k) proportional to 1/(k+1)^s: a few SKUs get most of the views."""
    cumulative, total = [], 0.0
    for k in range(1, n + 1):
        total += 1.0 / k**s
        cumulative.append(total)
    return lambda: min(n - 1, bisect.bisect_left(cumulative, rng.random() * total))


# --------------------------------------------------------------------------- worker
class Recorder:
    """Latencies per operation, status counts, and a per-second timeline of one worker."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, int] = defaultdict(int)
        self.timeline: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.errors = 0
        self.sales: list[float] = []  # flash sale: seconds after start of each success
        self.sold_to: dict[int, int] = defaultdict(int)  # flash sale: units per buyer

    def record(self, op: str, since: float, outcome: str, ok: bool) -> None:
        now = time.time()
        self.latencies[op].append(round((now - since) * 1000, 3))
        self.statuses[f"{op} {outcome}"] += 1
        self.timeline[int(now - self.start)][0 if ok else 1] += 1
        self.errors += not ok


class Worker:
    """One process's share of the load: `connections` tasks over keep-alive connections."""

    def __init__(self, cfg: Config, index: int) -> None:
        self.cfg = cfg
        self.index = index
        url = urlsplit(cfg.target)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.rng = random.Random(f"{cfg.run}-{index}")
        self.zipf = zipf_sampler(cfg.skus, cfg.zipf, self.rng)
        self.budget = cfg.max_requests // cfg.processes
        self.claimed = 0  # requests this worker may still have to send, at most
        self.orders = 0
        self.start(time.time())

    def start(self, at: float) -> None:
        self.cfg.start_at = at
        self.rec = Recorder(at)
        self.deadline = at + self.cfg.duration

    def sku(self) -> str:
        return f"{self.cfg.sku_prefix}-{self.zipf()}"

    def claim(self, requests: int) -> bool:
        """Room for an operation of up to `requests` requests, in time and in the budget."""
        if time.time() >= self.deadline or self.claimed + requests > self.budget:
            return False
        self.claimed += requests
        return True

    def pick(self) -> str:
        """The next operation: the scenario's own, or a read or a checkout in `mixed`."""
        if self.cfg.scenario != "mixed":
            return self.cfg.scenario
        return "availability" if self.rng.random() < self.cfg.read_ratio else "checkout"

    async def call(
        self,
        conn: HttpConnection,
        op: str,
        method: str,
        path: str,
        body: Any,
        since: float,
        expected: tuple[int, ...],
    ) -> tuple[int, bytes]:
        try:
            status, data = await conn.request(method, path, body)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            self.rec.record(op, since, type(exc).__name__, False)
            return 0, b""
        self.rec.record(op, since, str(status), status in expected)
        return status, data

    async def checkout(self, conn: HttpConnection, since: float) -> None:
        self.orders += 1
        order = f"{self.cfg.run}-{self.index}-{self.orders}"
        body = {"order_id": order, "lines": [{"sku": self.sku(), "qty": 1}]}
        status, _ = await self.call(
            conn, "reserve", "POST", "/v1/reservations", body, since, (201, 409)
        )
        if status != 201:
            return
        action = "ship" if self.rng.random() < self.cfg.ship_ratio else "cancel"
        await self.call(
            conn, action, "POST", f"/v1/reservations/{order}/{action}", None, time.time(), (200,)
        )

    async def operation(self, conn: HttpConnection, kind: str, since: float) -> None:
        if kind == "ping":
            await self.call(conn, "ping", "GET", "/v1/ping", None, since, (200,))
        elif kind == "availability":
            path = f"/v1/availability/{self.sku()}"
            await self.call(conn, "availability", "GET", path, None, since, (200,))
        else:
            await self.checkout(conn, since)

    async def closed_loop(self, conn: HttpConnection) -> None:
        while self.claim(REQUESTS_PER_OP[kind := self.pick()]):
            await self.operation(conn, kind, time.time())

    async def open_loop(self, conns: list[HttpConnection]) -> None:
        """Send at a fixed rate whatever the answers do; late sends count as latency."""
        tickets: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        interval = self.cfg.processes / self.cfg.rate

        async def sender(conn: HttpConnection) -> None:
            while (ticket := await tickets.get()) is not None:
                await self.operation(conn, *ticket)

        senders = [asyncio.create_task(sender(c)) for c in conns]
        due = self.cfg.start_at + self.rng.random() * interval
        while due < self.deadline and self.claim(REQUESTS_PER_OP[kind := self.pick()]):
            await asyncio.sleep(max(0.0, due - time.time()))
            tickets.put_nowait((kind, due))
            due += interval
        for _ in senders:
            tickets.put_nowait(None)
        await asyncio.gather(*senders)

    async def flash_buyers(self, conn: HttpConnection, buyers: list[tuple[int, int]]) -> None:
        path, sku = "/v1/reservations", f"{self.cfg.sku_prefix}-FLASH"
        while buyers and self.claim(1):
            b, t = buyers.pop()
            body: dict[str, Any] = {
                "order_id": f"{self.cfg.run}-b{b}-{t}",
                "lines": [{"sku": sku, "qty": 1}],
            }
            if self.cfg.limit:
                body["customer_id"] = f"{self.cfg.run}-c{b}"
            since = time.time()
            status, _ = await self.call(conn, "reserve", "POST", path, body, since, (201, 409))
            if status == 201:
                self.rec.sales.append(time.time() - self.cfg.start_at)
                self.rec.sold_to[b] += 1

    async def run(self) -> dict[str, Any]:
        conns = [
            HttpConnection(self.host, self.port, self.cfg.api_key)
            for _ in range(self.cfg.connections)
        ]
        await asyncio.gather(*(c.request("GET", "/v1/ping") for c in conns), return_exceptions=True)
        # Connected: tell the parent, and start when it says so (every worker at once).
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        self.start(float(line))
        await asyncio.sleep(max(0.0, self.cfg.start_at - time.time()))
        if self.cfg.scenario == "flash-sale":
            # Each buyer's tries are spread over the run, so they race each other too.
            mine = [
                (b, t)
                for t in range(self.cfg.tries)
                for b in range(self.index, self.cfg.buyers, self.cfg.processes)
            ][::-1]
            await asyncio.gather(*(self.flash_buyers(c, mine) for c in conns))
        elif self.cfg.rate > 0:
            await self.open_loop(conns)
        else:
            await asyncio.gather(*(self.closed_loop(c) for c in conns))
        for c in conns:
            c.close()
        return {
            "latencies": self.rec.latencies,
            "statuses": self.rec.statuses,
            "timeline": self.rec.timeline,
            "errors": self.rec.errors,
            "sales": self.rec.sales,
            "sold_to": self.rec.sold_to,
            "ended": time.time() - self.cfg.start_at,
        }


def worker_main() -> None:
    """Entry of a worker process.

    Reads a line of config JSON, connects, prints `ready`, reads the start time (epoch
    seconds) as a second line, runs, and writes the result JSON to the file the config
    names (a file, not the pipe: the event loop may leave standard output non-blocking,
    and a large result would then be cut at the pipe's 64 KiB).
    """
    spec = json.loads(sys.stdin.readline())
    cfg = Config(**spec["config"])
    import uvloop

    result = uvloop.run(Worker(cfg, spec["index"]).run())
    with open(spec["result"], "w") as fh:
        json.dump(result, fh)


# --------------------------------------------------------------------------- main side
async def _seed(cfg: Config) -> None:
    """Put stock behind the SKUs the scenario touches (POST /v1/inbound, warehouse scope)."""
    url = urlsplit(cfg.target)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if cfg.scenario == "flash-sale":
        todo = [(f"{cfg.sku_prefix}-FLASH", cfg.units)]
    elif cfg.scenario == "ping":
        todo = []
    else:
        todo = [(f"{cfg.sku_prefix}-{k}", 1_000_000) for k in range(cfg.skus)]
    conns = [HttpConnection(host, port, cfg.api_key) for _ in range(8)]

    async def seeder(conn: HttpConnection) -> None:
        while todo:
            sku, qty = todo.pop()
            body = {"ref": f"seed-{cfg.run}", "sku": sku, "location": cfg.location, "qty": qty}
            status, data = await conn.request("POST", "/v1/inbound", body)
            if status != 200:
                raise SystemExit(f"seeding {sku} failed: {status} {data[:300]!r}")

    await asyncio.gather(*(seeder(c) for c in conns))
    if cfg.scenario == "flash-sale" and cfg.limit:
        sku = f"{cfg.sku_prefix}-FLASH"
        status, data = await conns[0].request(
            "PUT", f"/v1/limits/{sku}", {"per_customer": cfg.limit}
        )
        if status != 200:
            raise SystemExit(f"setting the limit of {sku} failed: {status} {data[:300]!r}")
    for c in conns:
        c.close()


async def _stock(cfg: Config, sku: str) -> dict[str, Any]:
    url = urlsplit(cfg.target)
    conn = HttpConnection(url.hostname or "127.0.0.1", url.port or 80, cfg.api_key)
    status, data = await conn.request("GET", f"/v1/stock/{sku}")
    conn.close()
    if status != 200:
        raise SystemExit(f"GET /v1/stock/{sku} answered {status}: {data[:300]!r}")
    body: dict[str, Any] = json.loads(data)
    return body


def flash_sale_check(
    cfg: Config,
    sold: int,
    errors: int,
    stock: dict[str, Any],
    sold_to: dict[int, int] | None = None,
) -> dict[str, Any]:
    """No oversell: locked units never exceed the units put on sale, nor on_hand; and the
    books balance: every unit locked is one a buyer was told about (allowing for requests
    whose answer was lost to an error). With a per-customer limit, no buyer was sold more
    than it (`over_limit` counts the buyers who were)."""
    locked = sum(int(v["locked"]) for v in stock["locations"].values())
    on_hand = sum(int(v["on_hand"]) for v in stock["locations"].values())
    oversold = max(0, locked - cfg.units, sold - cfg.units, locked - on_hand)
    balanced = sold <= locked <= sold + errors
    over_limit = sum(1 for n in (sold_to or {}).values() if cfg.limit and n > cfg.limit)
    return {
        "units": cfg.units,
        "buyers": cfg.buyers,
        "limit": cfg.limit or None,
        "tries": cfg.tries,
        "sold": sold,
        "locked": locked,
        "on_hand": on_hand,
        "oversold": oversold,
        "over_limit": over_limit,
        "balanced": balanced,
        "ok": oversold == 0 and balanced and over_limit == 0,
    }


def _run_workers(cfg: Config, results_dir: str) -> list[dict[str, Any]]:
    """Start the worker processes, let them connect, start them together, collect."""
    procs = []
    for i in range(cfg.processes):
        p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdin is not None
        spec = {"config": asdict(cfg), "index": i, "result": f"{results_dir}/{i}.json"}
        p.stdin.write(json.dumps(spec) + "\n")
        p.stdin.flush()
        procs.append(p)
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise SystemExit("a load worker failed to start")
        cfg.start_at = time.time() + 0.05
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{cfg.start_at}\n")
            p.stdin.close()
        results: list[dict[str, Any]] = []
        for p in procs:
            assert p.stdout is not None
            p.stdout.read()
            p.wait(timeout=cfg.duration + 60)
            if p.returncode != 0:
                raise SystemExit(f"a load worker failed with exit status {p.returncode}")
            with open(f"{results_dir}/{len(results)}.json") as fh:
                results.append(json.load(fh))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdin, p.stdout):
                if pipe is not None:
                    pipe.close()


def run(cfg: Config, chart: str | None = None) -> dict[str, Any]:
    """Seed, run the workers, merge their figures; the report as a dict."""
    require_loopback(cfg.target)
    if cfg.scenario not in SCENARIOS:
        raise SystemExit(f"scenario must be one of {', '.join(SCENARIOS)}")
    if not 0 < cfg.duration <= MAX_DURATION_S or not 1 <= cfg.processes <= MAX_PROCESSES:
        raise SystemExit(f"duration must be in (0, {MAX_DURATION_S:g}] s, processes 1..16")
    if cfg.seed_stock:
        asyncio.run(_seed(cfg))
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        results = _run_workers(cfg, tmp)

    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, int] = defaultdict(int)
    timeline: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        for op, xs in r["latencies"].items():
            latencies[op].extend(xs)
        for k, n in r["statuses"].items():
            statuses[k] += n
        for sec, (ok, err) in r["timeline"].items():
            timeline[int(sec)][0] += ok
            timeline[int(sec)][1] += err
    elapsed = max(max(r["ended"] for r in results), 1e-9)
    total = sum(len(xs) for xs in latencies.values())
    errors = sum(r["errors"] for r in results)
    report: dict[str, Any] = {
        "label": cfg.label or cfg.target,
        "scenario": cfg.scenario,
        "target": cfg.target,
        "processes": cfg.processes,
        "connections": cfg.connections,
        "offered_rate": cfg.rate or None,
        "elapsed_s": round(elapsed, 3),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        # Top-level operations (a checkout's ship or cancel is part of its reserve).
        "ops_per_s": round(
            sum(len(latencies.get(op, ())) for op in ("ping", "availability", "reserve")) / elapsed,
            1,
        ),
        "errors": errors,
        "statuses": dict(sorted(statuses.items())),
        "latency_ms": latency_summary(x for xs in latencies.values() for x in xs),
        "by_op": {
            op: {"count": len(xs), **latency_summary(xs)} for op, xs in sorted(latencies.items())
        },
        "timeline": [[s, *timeline[s]] for s in sorted(timeline)],
    }
    if cfg.scenario == "flash-sale":
        sales = sorted(t for r in results for t in r["sales"])
        stock = asyncio.run(_stock(cfg, f"{cfg.sku_prefix}-FLASH"))
        sold_to: dict[int, int] = defaultdict(int)
        for r in results:
            for b, n in r["sold_to"].items():
                sold_to[int(b)] += n
        check = flash_sale_check(cfg, len(sales), errors, stock, sold_to)
        # Successful reservations/s while there was stock to sell.
        check["sold_per_s"] = round(len(sales) / sales[-1], 1) if sales else 0.0
        report["flash_sale"] = check
    if chart:
        draw_chart(report, chart)
        report["chart"] = chart
    return report


def draw_chart(report: dict[str, Any], path: str) -> None:
    """Throughput per second (ok / errors) and latency percentiles per operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    secs = [row[0] for row in report["timeline"]]
    left.plot(secs, [row[1] for row in report["timeline"]], marker="o", label="ok")
    left.plot(secs, [row[2] for row in report["timeline"]], marker="x", label="errors")
    left.set_xlabel("second of the run")
    left.set_ylabel("responses / s")
    left.legend()
    ops = list(report["by_op"])
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        right.bar(
            [k + (i - 1) * width for k in range(len(ops))],
            [report["by_op"][op][q] for op in ops],
            width,
            label=q,
        )
    right.set_xticks(range(len(ops)), ops)
    right.set_ylabel("latency, ms")
    right.legend()
    fig.suptitle(
        f"{report['label']}: {report['scenario']}, {report['requests_per_s']:,} req/s,"
        f" {report['errors']} errors"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="http://127.0.0.1:8000")
    p.add_argument("--scenario", choices=SCENARIOS, default="availability")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--connections", type=int, default=32, help="per process")
    p.add_argument("--duration", type=float, default=5.0, help="seconds, at most 300")
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=0.0, help="offered ops/s; 0: closed loop")
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--sku-prefix", default="LG")
    p.add_argument("--location", default="north")
    p.add_argument("--ship-ratio", type=float, default=0.5)
    p.add_argument("--buyers", type=int, default=2000)
    p.add_argument("--units", type=int, default=100)
    p.add_argument(
        "--limit", type=int, default=0, help="flash sale: per-customer limit (admin key)"
    )
    p.add_argument("--tries", type=int, default=1, help="flash sale: reservations per buyer")
    p.add_argument("--api-key", default=os.environ.get("LOADGEN_API_KEY", ""))
    p.add_argument("--label", default="")
    p.add_argument("--no-seed", action="store_true", help="the stock is already there")
    p.add_argument("--chart", help="PNG to draw")
    p.add_argument("--json", help="also write the report here")
    a = p.parse_args(argv)
    cfg = Config(
        target=a.target,
        scenario=a.scenario,
        processes=a.processes,
        connections=a.connections,
        duration=a.duration,
        max_requests=a.max_requests,
        rate=a.rate,
        skus=a.skus,
        zipf=a.zipf,
        sku_prefix=a.sku_prefix,
        location=a.location,
        ship_ratio=a.ship_ratio,
        buyers=a.buyers,
        units=a.units,
        limit=a.limit,
        tries=a.tries,
        api_key=a.api_key,
        label=a.label,
        seed_stock=not a.no_seed,
    )
    return cfg, a


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--worker"]:
        worker_main()
        return 0
    cfg, ns = parse_args(args)
    report = run(cfg, ns.chart)
    text = json.dumps(report, indent=2)
    if ns.json:
        with open(ns.json, "w") as fh:
            fh.write(text)
    print(text)
    return 0 if report.get("flash_sale", {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
