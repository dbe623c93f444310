"""`inventory-cache demo`: the whole service in one process, for a first look.

With no URLs set it runs on the embedded default (fakeredis with Lua in this process,
SQLite under ./.demo/), so it needs no server. The API, the write-behind worker (a
thread) and the scheduler share one event loop and one fakeredis server. The SQLite file
outlives the process while fakeredis does not, so every start warms Redis up from the
ledger, as production does after losing Redis. With INVENTORY_REDIS_URL and
INVENTORY_DATABASE_URL set, the same command runs against real servers.

Before it changes anything the demo takes its port (a busy port is one line, not a
traceback after seeding) and a lock on ./.demo/: two demos on one SQLite file would each
have their own in-process Redis and sell the same units twice. The admin key is kept in
./.demo/admin-key and reused, so restarts do not pile up keys. Unless a WMS is
configured, the demo plays one: every few minutes it writes ./.demo/wms.csv, an export of
its own stock in which the warehouse has counted one `charger-c` fewer in `south`, so
that reconciliation has something to find.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import fcntl
import io
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from inventory_cache.models import Component
from inventory_cache.settings import Settings, get_settings

log = logging.getLogger("inventory_cache.demo")


@dataclass(frozen=True)
class SeedItem:
    sku: str
    name: str
    barcode: str
    stock: dict[str, int]


LOCATIONS = {
    "north": ("North warehouse", "warehouse"),
    "south": ("South warehouse", "warehouse"),
    "store-1": ("City store", "store"),
}
CATALOGUE = [
    SeedItem("phone-a", "Phone A", "4006381333931", {"north": 10, "south": 5, "store-1": 2}),
    SeedItem("case-b", "Phone case B", "5901234123457", {"north": 1000, "store-1": 40}),
    SeedItem("charger-c", "Charger C", "96385074", {"south": 25}),
    SeedItem("earbuds-d", "Earbuds D (sold out)", "036000291452", {}),
]
# A bundle (kit) sold from the stock of its components.
KITS = {"phone-kit": [Component("phone-a", 1), Component("case-b", 1), Component("charger-c", 1)]}


# The demo's WMS (see the module docstring): rewritten this often, so its snapshot stays
# well within the hour of stream history that reconciliation rolls back through.
WMS_EXPORT_SECONDS = 600
WMS_SHORTFALL = ("charger-c", "south", 1)


class DemoRefused(Exception):
    """The demo cannot start; the message is the one line the user sees."""


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    """The demo's catalogue lives in north and south: try them in that order. Without a
    configured WMS, the demo's own export stands in for one."""
    update: dict[str, Any] = {}
    if not settings.location_priority:
        update["location_priority"] = ["north", "south"]
    if not settings.wms_url and not settings.wms_csv_path:
        update["wms_csv_path"] = str(data_dir / "wms.csv")
    return settings.model_copy(update=update)


def take_port(host: str, port: int) -> socket.socket:
    """Bind the port now, before anything is migrated or seeded; uvicorn serves on it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
        raise DemoRefused(
            f"port {port} on {host} {reason}; choose another with "
            f"INVENTORY_PORT={port + 1} scripts/demo.sh (or --port {port + 1})"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def lock_data_dir(data_dir: Path, port: int) -> IO[str]:
    """An exclusive lock held for the demo's life (the OS drops it when the process dies)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "demo.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DemoRefused(
            f"{data_dir}/ is in use by another demo ({holder}): use that one, or stop it first"
        ) from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, port {port}")
    handle.flush()
    return handle


def reset_data_dir(data_dir: Path, settings: Settings) -> None:
    """Delete what the demo keeps between runs (called with the lock held). Only the
    embedded demo's: data on configured servers is the operator's to drop."""
    if settings.redis_url is not None or settings.database_url is not None:
        raise DemoRefused(
            "--reset only clears the embedded demo; INVENTORY_REDIS_URL or "
            "INVENTORY_DATABASE_URL is set, so clear those servers yourself"
        )
    for entry in data_dir.iterdir():
        if entry.name == "demo.lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def admin_key(db: sa.Engine, key_file: Path) -> tuple[str, bool]:
    """The key saved by an earlier start if it is still valid, else a new one (saved).
    Returns the key and whether it is new."""
    from inventory_cache.apikeys import create_key, find_key, hash_key

    if key_file.exists():
        saved = key_file.read_text().strip()
        found = find_key(db, hash_key(saved)) if saved else None
        if found is not None and found.revoked_at is None and "admin" in found.scopes:
            return saved, False
    key, _ = create_key(db, name="demo-admin", scopes=["admin"])
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, True


async def write_wms_export(engine: Any, path: Path) -> None:
    """The demo's WMS export: our on_hand of the catalogue, minus the planted shortfall.
    Stamped before reading, so a change made meanwhile is rolled back, not reported."""
    taken_at = int(time.time() * 1000)
    out = io.StringIO()
    out.write(f"# taken_at={taken_at}\n")
    rows = csv.writer(out, lineterminator="\n")
    rows.writerow(["sku", "location", "on_hand"])
    sku_short, loc_short, short = WMS_SHORTFALL
    for item in CATALOGUE:
        view = await engine.stock(item.sku)
        for loc, level in sorted(view.locations.items()):
            count = level.on_hand - (short if (item.sku, loc) == (sku_short, loc_short) else 0)
            rows.writerow([item.sku, loc, max(count, 0)])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(out.getvalue())
    tmp.replace(path)


async def keep_exporting(engine: Any, path: Path, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WMS_EXPORT_SECONDS)
        if not stop.is_set():
            try:
                await write_wms_export(engine, path)
            except Exception:
                log.exception("demo WMS export failed")


def prepare_database(url: str) -> sa.Engine:
    from persistence.db import make_engine, migrate

    migrate(url, "head")
    return make_engine(url)


def seed_catalogue(db: sa.Engine) -> None:
    """Locations, SKUs and barcodes, once (insert what is missing)."""
    from persistence.models import Barcode, Location, Sku

    with db.begin() as conn:
        have_locs = set(conn.scalars(sa.select(Location.id)))
        for loc, (name, kind) in LOCATIONS.items():
            if loc not in have_locs:
                conn.execute(sa.insert(Location).values(id=loc, name=name, kind=kind))
        have_skus = set(conn.scalars(sa.select(Sku.sku)))
        have_codes = set(conn.scalars(sa.select(Barcode.code)))
        from inventory_cache.barcodes import normalize

        for item in CATALOGUE:
            if item.sku not in have_skus:
                conn.execute(sa.insert(Sku).values(sku=item.sku, name=item.name))
            gtin = normalize(item.barcode)
            if gtin not in have_codes:
                conn.execute(sa.insert(Barcode).values(code=gtin, sku=item.sku))


async def seed_stock(engine: Any) -> None:
    """Initial stock as inbound movements with fixed refs, so a restart adds nothing; the
    kits' definitions likewise (the same definition again changes nothing)."""
    for item in CATALOGUE:
        for loc, qty in item.stock.items():
            await engine.inbound(ref=f"demo-seed-{loc}", sku=item.sku, location=loc, qty=qty)
    for sku, components in KITS.items():
        await engine.put_bundle(sku, components)


def banner(url: str, key: str, key_file: Path) -> str:
    auth = f'-H "Authorization: Bearer {key}"'
    json = '-H "Content-Type: application/json"'
    return f"""
inventory-cache demo is running.

  API docs:   {url}/docs
  Admin key:  {key}   (kept in {key_file})

Try:
  curl {auth} {url}/v1/availability/phone-a
  curl {auth} {json} {url}/v1/reservations \\
       -d '{{"order_id": "order-1", "lines": [{{"sku": "phone-a", "qty": 2}}]}}'
  curl {auth} -X POST {url}/v1/reservations/order-1/ship
  curl {auth} -X POST {url}/v1/reconcile

The guided tour, with the answer to expect at each step: docs/quickstart.md
Ctrl-C stops it.
"""


def quiet_server(config: Any) -> Any:
    """A uvicorn server that stops on SIGINT/SIGTERM without re-raising the signal, so
    the demo can still stop its worker and scheduler and close the databases."""
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return Server(config)


async def serve_all(
    settings: Settings, db_url: str, host: str, sock: socket.socket, data_dir: Path
) -> None:
    import uvicorn

    from inventory_cache.api.main import create_app
    from inventory_cache.connection import make_async_redis, make_sync_redis
    from inventory_cache.engine import StockEngine
    from inventory_cache.scheduler import Scheduler
    from inventory_cache.warmup import warmup
    from inventory_cache.worker import Worker, WorkerConfig
    from persistence.db import make_engine, session_factory
    from persistence.sink import make_sink

    db = prepare_database(db_url)
    say("database migrated")
    report = warmup(make_sync_redis(settings), db, settings, if_needed=True, progress=False)
    say("redis already warm" if report.skipped else "redis warmed up from the ledger")
    seed_catalogue(db)
    client = make_async_redis(settings)
    engine = StockEngine(client, settings)
    await seed_stock(engine)
    say(f"catalogue seeded: {len(CATALOGUE)} SKUs in {len(LOCATIONS)} locations")
    key_file = data_dir / "admin-key"
    key, new = admin_key(db, key_file)
    say(f"new admin key saved in {key_file}" if new else f"admin key reused from {key_file}")

    sink = make_sink(db_url)
    worker = Worker(
        make_sync_redis(settings), sink, settings, WorkerConfig(block_ms=200), database=db
    )
    worker_thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    worker_thread.start()
    say("worker started")

    stop = asyncio.Event()
    scheduler = Scheduler.from_settings(client, settings, session_factory(make_engine(db_url)))
    scheduler_task = asyncio.create_task(scheduler.run(stop))
    say("scheduler started")
    exporter: asyncio.Task[None] | None = None
    wms_file = data_dir / "wms.csv"
    if settings.wms_csv_path == str(wms_file):
        await write_wms_export(engine, wms_file)
        exporter = asyncio.create_task(keep_exporting(engine, wms_file, stop))
        say(f"WMS: the demo's own export, {wms_file} (one charger-c missing in south)")

    app = create_app(settings, engine=engine, database=db)
    port = sock.getsockname()[1]
    server = quiet_server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn offers a flag, not an event, for "listening".
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        print(banner(f"http://{host}:{port}", key, key_file), flush=True)
    try:
        await serving
    finally:
        say("stopping")
        stop.set()
        with contextlib.suppress(Exception):
            await scheduler_task
        if exporter is not None:
            with contextlib.suppress(Exception):
                await exporter
        worker.stop()
        worker_thread.join(timeout=10)
        sink.close()
        await client.aclose()
        db.dispose()
        say("stopped")


def run_demo(host: str = "127.0.0.1", port: int | None = None, reset: bool = False) -> int:
    """Returns the exit status: 0 after Ctrl-C, 2 when the demo refused to start."""
    from persistence.db import DEMO_DIR, database_url

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    base = get_settings()
    data_dir = DEMO_DIR
    settings = demo_settings(base, data_dir)
    db_url = database_url(settings.database_url)
    try:
        sock = take_port(host, port or settings.port)
    except DemoRefused as exc:
        say(str(exc))
        return 2
    with sock:
        try:
            lock = lock_data_dir(data_dir, sock.getsockname()[1])
        except DemoRefused as exc:
            say(str(exc))
            return 2
        with lock:
            if reset:
                try:
                    reset_data_dir(data_dir, settings)
                except DemoRefused as exc:
                    say(str(exc))
                    return 2
                say(f"--reset: deleted the demo's data in {data_dir}/")
            where = "embedded fakeredis" if settings.redis_url is None else settings.redis_url
            say(f"redis: {where}; database: {db_url}")
            say(
                f"data in {data_dir}/ persists between runs (stock, orders, keys); "
                "start afresh with: scripts/demo.sh --reset"
            )
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve_all(settings, db_url, host, sock, data_dir))
    return 0
