"""`inventory-cache demo`: the whole service in one process, for a first look.

With no URLs set it runs on the embedded default (fakeredis with Lua in this process,
SQLite under ./.demo/), so it needs no server. The API, the write-behind worker (a
thread) and the scheduler share one event loop and one fakeredis server. The SQLite file
outlives the process while fakeredis does not, so every start warms Redis up from the
ledger, as production does after losing Redis. With INVENTORY_REDIS_URL and
INVENTORY_DATABASE_URL set, the same command runs against real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

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


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def demo_settings(settings: Settings) -> Settings:
    """The demo's catalogue lives in north and south: try them in that order."""
    if settings.location_priority:
        return settings
    return settings.model_copy(update={"location_priority": ["north", "south"]})


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
    """Initial stock as inbound movements with fixed refs, so a restart adds nothing."""
    for item in CATALOGUE:
        for loc, qty in item.stock.items():
            await engine.inbound(ref=f"demo-seed-{loc}", sku=item.sku, location=loc, qty=qty)


def banner(url: str, key: str) -> str:
    auth = f'-H "Authorization: Bearer {key}"'
    json = '-H "Content-Type: application/json"'
    return f"""
inventory-cache demo is running.

  API docs:   {url}/docs
  Admin key:  {key}

Try:
  curl {auth} {url}/v1/availability/phone-a
  curl {auth} {json} {url}/v1/reservations \\
       -d '{{"order_id": "order-1", "lines": [{{"sku": "phone-a", "qty": 2}}]}}'
  curl {auth} -X POST {url}/v1/reservations/order-1/ship
  curl {auth} {json} {url}/v1/inbound \\
       -d '{{"ref": "po-7", "sku": "earbuds-d", "location": "north", "qty": 30}}'
  curl {auth} "{url}/v1/movements?sku=phone-a&limit=5"

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


async def serve_all(settings: Settings, db_url: str, host: str, port: int) -> None:
    import uvicorn

    from inventory_cache.api.main import create_app
    from inventory_cache.apikeys import create_key
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
    key, _ = create_key(db, name="demo-admin", scopes=["admin"])

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

    app = create_app(settings, engine=engine, database=db)
    server = quiet_server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    # uvicorn offers a flag, not an event, for "listening".
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        print(banner(f"http://{host}:{port}", key), flush=True)
    try:
        await serving
    finally:
        say("stopping")
        stop.set()
        with contextlib.suppress(Exception):
            await scheduler_task
        worker.stop()
        worker_thread.join(timeout=10)
        sink.close()
        await client.aclose()
        db.dispose()
        say("stopped")


def run_demo(host: str = "127.0.0.1", port: int | None = None) -> None:
    from persistence.db import database_url

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = demo_settings(get_settings())
    where = "embedded fakeredis" if settings.redis_url is None else settings.redis_url
    say(f"redis: {where}; database: {database_url(settings)}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_all(settings, database_url(settings), host, port or settings.port))
