"""Reconciliation: the WMS's on_hand against ours, compared at one consistent instant.

Comparing two live systems naively reports every movement that one side has applied and
the other not yet: a shipment the WMS packed at 03:00:00 whose `ship` call reaches us at
03:00:02 would look like an oversell risk. So both sides are brought to the snapshot's
instant T before comparing:

* Ours at T: each group's on_hand is read atomically with the position of the group's
  event stream (`reconcile_read-2.lua`), then the events stamped after T (`ts` > T) are
  rolled back and any stamped at or before T but written after the read are added.
* What the WMS had applied by T but not delivered to us (its `in_flight` outbox) is added
  to ours, unless our stream already holds that movement by T (matched on its ref, sku and
  location), which happens when the WMS is slow to clear its outbox.

Only locations the snapshot mentions are compared (stores that the WMS does not manage
are not its business); within them, a missing (sku, location) row counts as 0 on the WMS.
A difference is `oversell_risk` when ours > WMS (we may sell units that are not there)
and `undersell` when ours < WMS. In `correct` mode each is fixed by an adjustment of
-diff with reason `reconcile` through the engine: a delta, not a set, so that movements
after T are kept. Its ref `rc.<run_id>.<n>` makes a retried run's corrections idempotent.

Limits: T and our `ts` come from two clocks, kept in sync by NTP. The rollback reads the
Redis event streams back to T minus `ROLLBACK_MARGIN_MS`; the worker never trims the
last hour of a stream, so a snapshot must be less than about an hour old when the run
starts (take it at the start of the run, as both adapters do by default).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inventory_cache import validation as v
from inventory_cache.engine import StockEngine
from inventory_cache.errors import InventoryError
from inventory_cache.script_calls import reconcile_read
from inventory_cache.wms import WmsSnapshot, WmsSource
from persistence.events import Row, StreamId, fields_text, read_rows
from persistence.models import ReconcileDiff, ReconcileRun

Kind = Literal["oversell_risk", "undersell"]
Mode = Literal["report", "correct"]
Progress = Callable[[int, int], None]
Key = tuple[str, str]

READ_CHUNK = 200  # SKUs per reconcile_read call
STREAM_PAGE = 1000
ROLLBACK_MARGIN_MS = 60_000


@dataclass(frozen=True, slots=True)
class Diff:
    sku: str
    location: str
    ours: int  # ours at the snapshot's instant, movements in flight included
    wms: int
    diff: int  # ours - wms
    kind: Kind

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "location": self.location,
            "ours": self.ours,
            "wms": self.wms,
            "diff": self.diff,
            "kind": self.kind,
        }


@dataclass(slots=True)
class RunResult:
    run_id: str
    mode: Mode
    source: str
    snapshot_at: int
    checked: int = 0
    diffs: list[Diff] = field(default_factory=list)
    corrected: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "snapshot_at": self.snapshot_at,
            "checked": self.checked,
            "diffs": len(self.diffs),
            "oversell_risk": sum(1 for d in self.diffs if d.kind == "oversell_risk"),
            "undersell": sum(1 for d in self.diffs if d.kind == "undersell"),
            "corrected": self.corrected,
            "failures": self.failures,
        }


def new_run_id(now_ms: int) -> str:
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"r{stamp}-{secrets.token_hex(3)}"


def classify(ours: dict[Key, int], wms: WmsSnapshot) -> tuple[int, list[Diff]]:
    """Compare at the snapshot's locations; returns (pairs checked, diffs sorted by key)."""
    locations = {loc for _, loc in wms.on_hand}
    keys = set(wms.on_hand) | {k for k in ours if k[1] in locations}
    diffs = []
    for key in sorted(keys):
        a, b = ours.get(key, 0), wms.on_hand.get(key, 0)
        if a != b:
            kind: Kind = "oversell_risk" if a > b else "undersell"
            diffs.append(Diff(key[0], key[1], a, b, a - b, kind))
    return len(keys), diffs


async def our_skus(engine: StockEngine) -> set[str]:
    """Every SKU with a stock hash in Redis (SCAN; on a cluster, every primary)."""
    out = set()
    async for raw in engine.client.scan_iter(match=engine.keys.scan_pattern("s"), count=1000):
        sku = engine.keys.stock_sku(raw)
        if sku is not None:
            out.add(sku)
    return out


async def _read_group(
    engine: StockEngine, g: int, skus: Sequence[str]
) -> tuple[dict[str, StreamId], dict[Key, int]]:
    """Read `skus` of group g in chunks: (stream position per SKU, on_hand per key)."""
    chunks = [skus[i : i + READ_CHUNK] for i in range(0, len(skus), READ_CHUNK)]
    calls = [
        reconcile_read(
            ready=engine.keys.ready(g),
            events=engine.keys.events(g),
            stocks=[engine.keys.stock(s) for s in chunk],
        )
        for chunk in chunks
    ]
    position: dict[str, StreamId] = {}
    values: dict[Key, int] = {}
    for chunk, reply in zip(chunks, await engine.run_many(calls), strict=True):
        if isinstance(reply, BaseException):
            raise reply
        last = StreamId.parse(reply["last"])
        stocks = reply["stocks"] if isinstance(reply["stocks"], list) else []
        for sku, flat in zip(chunk, stocks, strict=True):
            position[sku] = last
            pairs = flat if isinstance(flat, list) else []
            for i in range(0, len(pairs), 2):
                values[(sku, pairs[i])] = int(pairs[i + 1])
    return position, values


async def _recent_events(
    engine: StockEngine, g: int, cutoff_ms: int
) -> list[tuple[StreamId, int, str, list[Row]]]:
    """The group's events newest first, down to the first one stamped at or before cutoff."""
    out = []
    end = "+"
    while True:
        page = await engine.client.xrevrange(engine.keys.events(g), end, "-", count=STREAM_PAGE)
        for raw_id, fields in page:
            f = fields_text(fields)
            ts = int(f.get("ts", "0"))
            out.append((StreamId.parse(raw_id), ts, f.get("ref", ""), read_rows(f.get("rows"))))
            if ts <= cutoff_ms:
                return out
        if len(page) < STREAM_PAGE:
            return out
        end = f"({StreamId.parse(page[-1][0])}"


async def ours_at(
    engine: StockEngine,
    skus: Iterable[str],
    snapshot: WmsSnapshot,
    progress: Progress | None = None,
) -> dict[Key, int]:
    """Our on_hand per key at the snapshot's instant, with its movements in flight added."""
    by_group: dict[int, list[str]] = defaultdict(list)
    for sku in sorted(set(skus)):
        by_group[engine.keys.group_of(sku)].append(sku)
    total = sum(len(s) for s in by_group.values())
    t = snapshot.taken_at
    cutoff = min([t] + [m.at for m in snapshot.in_flight]) - ROLLBACK_MARGIN_MS
    flight = {(m.ref, m.sku, m.location) for m in snapshot.in_flight}
    ours: dict[Key, int] = {}
    seen: set[tuple[str, str, str]] = set()
    done = 0
    for g, group_skus in sorted(by_group.items()):
        position, values = await _read_group(engine, g, group_skus)
        for id_, ts, ref, rows in await _recent_events(engine, g, cutoff):
            for row in rows:
                sku, loc, d_on_hand = row.sku, row.location, row.d_on_hand
                if d_on_hand == 0 or sku not in position:
                    continue
                read = id_ <= position[sku]
                if ts > t and read:
                    values[(sku, loc)] = values.get((sku, loc), 0) - d_on_hand
                elif ts <= t and not read:
                    values[(sku, loc)] = values.get((sku, loc), 0) + d_on_hand
                if ts <= t and (ref, sku, loc) in flight:
                    seen.add((ref, sku, loc))
        ours.update(values)
        done += len(group_skus)
        if progress is not None:
            progress(done, total)
    for m in snapshot.in_flight:
        if (m.ref, m.sku, m.location) not in seen:
            ours[(m.sku, m.location)] = ours.get((m.sku, m.location), 0) + m.delta
    return ours


async def apply_corrections(engine: StockEngine, run_id: str, result: RunResult) -> None:
    """Adjust ours by -diff (reason `reconcile`); a refused one is recorded, not raised."""
    for n, d in enumerate(result.diffs):
        remaining, step = -d.diff, 0
        try:
            while remaining:
                part = max(-v.MAX_QTY, min(v.MAX_QTY, remaining))
                await engine.adjust(
                    ref=f"rc.{run_id}.{n}" + (f".{step}" if step else ""),
                    sku=d.sku,
                    location=d.location,
                    reason="reconcile",
                    delta=part,
                )
                remaining -= part
                step += 1
            result.corrected += 1
        except InventoryError as exc:
            result.failures.append(
                {"sku": d.sku, "location": d.location, "code": exc.code, "detail": exc.detail}
            )


async def reconcile(
    engine: StockEngine,
    source: WmsSource,
    *,
    mode: Mode = "report",
    run_id: str | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """One run: snapshot, ours at its instant, diffs, and in `correct` mode the fixes."""
    snapshot = await source.snapshot()
    run_id = run_id or new_run_id(engine.now())
    skus = {sku for sku, _ in snapshot.on_hand} | await our_skus(engine)
    ours = await ours_at(engine, skus, snapshot, progress)
    result = RunResult(run_id, mode, snapshot.source or source.describe(), snapshot.taken_at)
    result.checked, result.diffs = classify(ours, snapshot)
    if mode == "correct" and result.diffs:
        await apply_corrections(engine, run_id, result)
    return result


# ---------------------------------------------------------------------------- the record
def record_start(session: Session, *, run_id: str, mode: Mode, source: str) -> None:
    session.add(ReconcileRun(run_id=run_id, status="running", mode=mode, source=source))
    session.commit()


def record_finish(
    session: Session, *, run_id: str, result: RunResult | None, error: str | None = None
) -> None:
    """Store the diffs and the summary; a run that raised is `failed` with its error."""
    run = session.get(ReconcileRun, run_id)
    if run is None:
        raise LookupError(run_id)
    run.finished_at = datetime.now(UTC)
    if result is None:
        run.status, run.summary = "failed", {"error": error}
    else:
        run.status, run.summary = "done", result.summary()
        run.source = result.source
        session.add_all(ReconcileDiff(run_id=run_id, **d.as_dict()) for d in result.diffs)
    session.commit()


def load_run(session: Session, run_id: str) -> dict[str, Any] | None:
    """A run as `GET /v1/reconcile/{run_id}` shows it, diffs sorted by (sku, location)."""
    run = session.get(ReconcileRun, run_id)
    if run is None:
        return None
    diffs = session.scalars(
        select(ReconcileDiff)
        .where(ReconcileDiff.run_id == run_id)
        .order_by(ReconcileDiff.sku, ReconcileDiff.location)
    )
    return {
        "run_id": run.run_id,
        "status": run.status,
        "mode": run.mode,
        "source": run.source,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "summary": run.summary,
        "diffs": [
            {
                "sku": d.sku,
                "location": d.location,
                "ours": d.ours,
                "wms": d.wms,
                "diff": d.diff,
                "kind": d.kind,
            }
            for d in diffs
        ],
    }


def list_runs(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The latest runs, newest first, without their diffs (the summary counts them)."""
    query = (
        select(ReconcileRun)
        .order_by(ReconcileRun.started_at.desc(), ReconcileRun.run_id.desc())
        .limit(limit)
    )
    return [
        {
            "run_id": run.run_id,
            "status": run.status,
            "mode": run.mode,
            "source": run.source,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "summary": run.summary,
        }
        for run in session.scalars(query)
    ]


async def begin_run(
    sessions: sessionmaker[Session], *, run_id: str, mode: Mode, source: WmsSource
) -> None:
    def start() -> None:
        with sessions() as s:
            record_start(s, run_id=run_id, mode=mode, source=source.describe())

    await asyncio.to_thread(start)


async def run_recorded(
    engine: StockEngine,
    source: WmsSource,
    sessions: sessionmaker[Session],
    *,
    mode: Mode = "report",
    run_id: str | None = None,
    progress: Progress | None = None,
    begun: bool = False,
) -> RunResult:
    """A run stored in `reconcile_runs` from its start, so a crash leaves it visible.

    `begun`: the caller already stored its start (`begin_run`), to answer with its id.
    """
    run_id = run_id or new_run_id(engine.now())

    def start() -> None:
        with sessions() as s:
            record_start(s, run_id=run_id, mode=mode, source=source.describe())

    def finish(result: RunResult | None, error: str | None = None) -> None:
        with sessions() as s:
            record_finish(s, run_id=run_id, result=result, error=error)

    if not begun:
        await asyncio.to_thread(start)
    try:
        result = await reconcile(engine, source, mode=mode, run_id=run_id, progress=progress)
    except Exception as exc:
        await asyncio.to_thread(finish, None, f"{type(exc).__name__}: {exc}")
        raise
    await asyncio.to_thread(finish, result)
    return result


# ---------------------------------------------------------------------------- the command
PROGRESS_MIN_SKUS = 500  # a catalogue this big gets a progress bar


def run_command(*, mode: Mode | None = None, as_json: bool = False) -> int:
    """`inventory-cache reconcile`: one recorded run; the diffs as a table on stdout.

    Returns:
        The exit status: 0 when ours matches the WMS afterwards, 1 when differences
        remain (report mode, or a correction was refused), 2 when the run failed.
    """
    import sys

    from redis.exceptions import RedisError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from inventory_cache.connection import make_async_redis
    from inventory_cache.settings import get_settings
    from inventory_cache.wms import WmsError, wms_from_settings
    from persistence.db import database_url, make_engine, session_factory

    cfg = get_settings()
    err = Console(stderr=True)
    out = Console()
    try:
        source = wms_from_settings(cfg)
    except WmsError as exc:
        err.print(f"[red]{exc}[/red]")
        return 2
    chosen: Mode = mode or cfg.reconcile_mode
    bar = Progress(
        TextColumn("reading ours"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    )
    task = bar.add_task("ours", total=None)

    def progress(done: int, total: int) -> None:
        if total >= PROGRESS_MIN_SKUS:
            if not bar.live.is_started:
                bar.start()
            bar.update(task, completed=done, total=total)

    async def main() -> RunResult:
        client = make_async_redis(cfg)
        db = make_engine(database_url(cfg.database_url), pool_size=1, max_overflow=1)
        try:
            engine = StockEngine(client, cfg)
            return await run_recorded(
                engine, source, session_factory(db), mode=chosen, progress=progress
            )
        finally:
            await client.aclose()
            db.dispose()

    try:
        result = asyncio.run(main())
    except (InventoryError, WmsError, SQLAlchemyError, RedisError) as exc:
        err.print(f"[red]reconciliation failed: {type(exc).__name__}: {exc}[/red]")
        return 2
    finally:
        bar.stop()
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                {
                    "run_id": result.run_id,
                    "mode": result.mode,
                    "summary": result.summary(),
                    "diffs": [d.as_dict() for d in result.diffs],
                }
            ).decode()
            + "\n"
        )
    else:
        out.print(
            f"run {result.run_id} ({result.mode}): {result.checked} checked, "
            f"{len(result.diffs)} differences",
            soft_wrap=True,
        )
        table = Table()
        for col in ("sku", "location", "ours", "wms", "diff", "kind"):
            table.add_column(col, justify="right" if col in ("ours", "wms", "diff") else "left")
        for d in result.diffs:
            table.add_row(d.sku, d.location, str(d.ours), str(d.wms), f"{d.diff:+d}", d.kind)
        out.print(table)
        if result.mode == "correct":
            err.print(f"corrected {result.corrected} of {len(result.diffs)}")
        for f in result.failures:
            err.print(f"[red]not corrected: {f['sku']} at {f['location']}: {f['detail']}[/red]")
    remaining = len(result.diffs) - (result.corrected if result.mode == "correct" else 0)
    return 1 if remaining else 0
