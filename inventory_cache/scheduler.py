"""The background half: expiry sweep, scheduled reconciliation, alerts and notifications.

`inventory-cache scheduler` runs one `Scheduler` on APScheduler's asyncio loop. Several may
run (one per host, say); a Redis lease (`lease.py`) makes exactly one of them act:

* heartbeat, every lease/3: renew the lease, or take it over from a holder that died.
* sweep, every `INVENTORY_EXPIRY_SWEEP_SECONDS`: release reservations past their TTL.
  Each one is decided once on its order index, so even two sweepers expire it once.
* reconcile check, every 15 s: the latest due slot of `INVENTORY_RECONCILE_CRON` (UTC)
  that is less than `RECONCILE_GRACE` old is claimed under the lease's fencing token
  (`lease_claim-2.lua`) and run. Checking slots instead of relying on APScheduler's own
  cron firing means a standby that takes over at 03:00:10 still runs the 03:00 slot its
  dead predecessor never started, and the claim means a slot runs once, whoever holds
  the lease when.
* evaluate, every `INVENTORY_ALERT_INTERVAL_SECONDS`: alerts (`alerts.py`) and back in
  stock notifications (`subscriptions.py`).
* forecast check, every 60 s: the latest slot of `INVENTORY_FORECAST_CRON` less than
  `FORECAST_GRACE` old runs as `nightly-<slot>` (`forecast_job.py`) unless its row says
  `ok`; the run's row in PostgreSQL is its mutex, so a failed run (PostgreSQL away) is
  simply tried again at the next check, and a lease handover mid-run cannot start it twice.

A job that fails logs and is tried again at its next interval; a claimed reconciliation
that fails stays `failed` in `reconcile_runs` (run it again on demand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache import heap
from inventory_cache.alerts import AlertChange, AlertMonitor
from inventory_cache.engine import StockEngine
from inventory_cache.lease import Lease
from inventory_cache.reconcile import RunResult, run_recorded
from inventory_cache.settings import Settings
from inventory_cache.subscriptions import BackInStock, Notification
from inventory_cache.webhooks import WebhookSender
from inventory_cache.wms import WmsSource

log = logging.getLogger(__name__)

RECONCILE_GRACE = timedelta(hours=1)
RECONCILE_CHECK_SECONDS = 15.0
FORECAST_GRACE = timedelta(hours=20)
FORECAST_CHECK_SECONDS = 60.0
CLAIM_RETENTION_MS = 8 * 86400 * 1000


async def sweep_expired(
    engine: StockEngine,
    *,
    limit_per_group: int = 8,
    max_passes: int = 1000,
    budget_seconds: float | None = None,
) -> int:
    """Release every reservation past its TTL; returns how many parts this call expired.

    The clock is read once, from Redis (`engine.sweep_now()`), and every pass compares
    with that instant: this host's clock plays no part, and what falls due while the
    sweep runs waits for the next one (a sweep interval later).
    `expire_due` takes a bounded page of due orders per pass, so a backlog (a scheduler
    that was down, a burst of large orders) drains in passes of bounded memory; the sweep
    stops when a pass expires nothing, which also ends the loop when the due entries left
    are not ours to expire (another sweeper or a ship got there first, or an attempt is
    still placing its parts), or once it has run `budget_seconds`: the next sweep reads
    the clock again, so what fell due meanwhile is not held behind a long backlog.
    """
    now = await engine.sweep_now()
    started = time.monotonic()
    total = 0
    for _ in range(max_passes):
        n = await engine.expire_due(limit_per_group=limit_per_group, now=now)
        total += n
        if n == 0:
            break
        if budget_seconds is not None and time.monotonic() - started >= budget_seconds:
            break
    return total


def due_slot(
    cron: CronTrigger, now: datetime, grace: timedelta = RECONCILE_GRACE
) -> datetime | None:
    """The latest fire time of `cron` in (now - grace, now], or None."""
    slot = None
    t = cron.get_next_fire_time(None, now - grace + timedelta(microseconds=1))
    while t is not None and t <= now:
        slot = t
        t = cron.get_next_fire_time(t, t + timedelta(seconds=1))
    return slot


@dataclass
class Evaluation:
    alerts: list[AlertChange] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        engine: StockEngine,
        settings: Settings,
        *,
        lease: Lease,
        sessions: sessionmaker[Session] | None = None,
        wms: WmsSource | None = None,
        alerts: AlertMonitor | None = None,
        back_in_stock: BackInStock | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.lease = lease
        self.sessions = sessions
        self.wms = wms
        self.alerts = alerts
        self.back_in_stock = back_in_stock
        self.cron = CronTrigger.from_crontab(settings.reconcile_cron, timezone=UTC)
        self.forecast_cron = CronTrigger.from_crontab(settings.forecast_cron, timezone=UTC)

    @classmethod
    def from_settings(
        cls,
        client: Any,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        wms: WmsSource | None = None,
    ) -> Scheduler:
        """Everything wired from `INVENTORY_*` (what `inventory-cache scheduler` runs)."""
        engine = StockEngine(client, settings)
        sender = WebhookSender(
            allowed_hosts=settings.webhook_allowed_hosts, secret=settings.webhook_secret
        )
        lease = Lease(
            client,
            prefix=settings.redis_prefix,
            name="scheduler",
            ttl_ms=int(settings.lease_seconds * 1000),
        )
        return cls(
            engine,
            settings,
            lease=lease,
            sessions=sessions,
            wms=wms,
            alerts=AlertMonitor(
                engine, sessions, sender=sender, webhook_url=settings.alert_webhook_url
            ),
            back_in_stock=BackInStock(
                engine, sessions, sender=sender, notify_url=settings.notify_webhook_url
            ),
        )

    # ------------------------------------------------------------------ jobs
    async def heartbeat(self) -> bool:
        was = self.lease.held
        held = await self.lease.keep()
        if held != was:
            log.info(
                "scheduler %s %s the lease (token %s)",
                self.lease.owner,
                "took" if held else "lost",
                self.lease.token,
            )
        return held

    async def sweep(self) -> int:
        """Expire due reservations, if this scheduler leads; returns parts expired."""
        if not self.lease.held:
            return 0
        return await sweep_expired(self.engine, budget_seconds=self.settings.expiry_sweep_seconds)

    async def reconcile_if_due(self, now: datetime | None = None) -> RunResult | None:
        """Run the due reconciliation slot, once across all schedulers."""
        if not self.lease.held or self.wms is None or self.sessions is None:
            return None
        slot = due_slot(self.cron, now or datetime.now(UTC))
        if slot is None:
            return None
        stamp = slot.strftime("%Y%m%dT%H%M")
        if not await self.lease.claim(f"reconcile:{stamp}", retention_ms=CLAIM_RETENTION_MS):
            return None
        log.info("reconciliation of slot %s starts (fence %s)", stamp, self.lease.token)
        return await run_recorded(
            self.engine,
            self.wms,
            self.sessions,
            mode=self.settings.reconcile_mode,
            run_id=f"cron-{stamp}",
        )

    async def forecast_if_due(self, now: datetime | None = None) -> dict[str, Any] | None:
        """Run the due nightly forecast slot unless it already succeeded; the fit runs in a
        thread (the loop keeps the lease alive) and stops between chunks if the lease goes."""
        if not self.lease.held or self.sessions is None:
            return None
        slot = due_slot(self.forecast_cron, now or datetime.now(UTC), FORECAST_GRACE)
        if slot is None:
            return None
        from inventory_cache.forecast_job import run_forecast, run_status  # numpy: not at start

        run_id = f"nightly-{slot:%Y%m%dT%H%M}"
        sessions = self.sessions

        def run() -> dict[str, Any] | None:
            with sessions() as s:
                if run_status(s, run_id) == "ok":
                    return None
            return run_forecast(
                sessions,
                run_id=run_id,
                owner=self.lease.owner,
                now=now,
                history_days=self.settings.forecast_history_days,
                keep_going=lambda: self.lease.held,
            )

        return await asyncio.to_thread(run)

    async def evaluate(self) -> Evaluation:
        out = Evaluation()
        if not self.lease.held:
            return out
        if self.alerts is not None:
            out.alerts = await self.alerts.tick()
        if self.back_in_stock is not None:
            out.notifications = await self.back_in_stock.tick()
        return out

    # ------------------------------------------------------------------ running
    def build(self) -> AsyncIOScheduler:
        """The APScheduler with every job; one instance of each at a time, no catch-up
        bursts after a pause (coalesce), since every job looks at the current state."""
        s = self.settings
        sched = AsyncIOScheduler(timezone=UTC)
        opts: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        jobs = [
            (self.heartbeat, max(0.05, s.lease_seconds / 3)),
            (self.sweep, s.expiry_sweep_seconds),
            (self.reconcile_if_due, RECONCILE_CHECK_SECONDS),
            (self.evaluate, s.alert_interval_seconds),
            (self.forecast_if_due, FORECAST_CHECK_SECONDS),
        ]
        for job, seconds in jobs:
            sched.add_job(
                _logged(job),
                "interval",
                seconds=seconds,
                next_run_time=datetime.now(UTC),
                id=job.__name__,
                **opts,
            )
        return sched

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then hand the lease on so a standby takes over at once."""
        await self.heartbeat()
        sched = self.build()
        sched.start()
        try:
            await stop.wait()
        finally:
            sched.shutdown(wait=False)
            with contextlib.suppress(Exception):
                await self.lease.release()


def _logged(job: Any) -> Any:
    async def run() -> None:
        try:
            await job()
        except Exception:
            log.exception("scheduler job %s failed", job.__name__)

    run.__name__ = job.__name__
    return run


def run_scheduler(settings: Settings | None = None) -> None:
    """`inventory-cache scheduler`: run until SIGTERM or SIGINT, then hand the lease on."""
    import signal

    from inventory_cache.connection import make_async_redis
    from inventory_cache.settings import get_settings
    from inventory_cache.wms import WmsError, wms_from_settings
    from persistence.db import database_url, make_engine, session_factory

    cfg = settings or get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        client = make_async_redis(cfg)
        db = make_engine(database_url(cfg.database_url), pool_size=2, max_overflow=2)
        try:
            wms: WmsSource | None = wms_from_settings(cfg)
        except WmsError as exc:
            log.warning("scheduled reconciliation is off: %s", exc)
            wms = None
        scheduler = Scheduler.from_settings(client, cfg, session_factory(db), wms=wms)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("scheduler %s started", scheduler.lease.owner)
        heap.settle()
        try:
            await scheduler.run(stop)
        finally:
            await client.aclose()
            db.dispose()
        log.info("scheduler %s stopped", scheduler.lease.owner)

    asyncio.run(main())
