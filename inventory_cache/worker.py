"""The write-behind worker: every group's event stream into PostgreSQL, exactly once in effect.

Delivery is at-least-once and the sink is idempotent (docs/durability.md):

1. Each worker is a consumer of the consumer group `ledger` on every stream
   `inv:{g}:ev`. On start it first re-reads its *own* pending entries (read before a
   crash, never acknowledged), then new ones (`XREADGROUP ... >`).
2. A batch of entries is parsed, merged (`persistence.ledger`) and written in ONE
   transaction with bulk statements (`persistence.sink`); only after COMMIT are the
   entries acknowledged (XACK). The write and the XACK run in commit threads, one per
   database connection (`--connections`, default 2), while the main thread reads and
   parses the next batch: the database's work overlaps ours, and two backends share the
   batches as two workers would (batches may commit out of order, which the merge rules
   of `persistence.ledger` allow). A crash between COMMIT and XACK leaves the entries
   pending: they are written again, and the ledger's unique (op_id, sku, location) and
   the version guard on stock levels make the second write change nothing.
3. Entries left pending by a dead consumer are taken over with XAUTOCLAIM once they have
   been idle longer than `claim_idle_ms` (kept above three times the slowest batch this
   worker has seen). While a worker waits for the database it refreshes the idle time of
   the entries it holds, so that others do not take them over for nothing.
4. An entry that cannot be applied (malformed, or refused by the database) stays pending
   and is retried on each claim until it has been delivered `max_deliveries` times; then
   it is copied to the dead-letter stream `inv:dead` and acknowledged. The rest of its
   batch is written without it.
5. Database outages, serialization failures and deadlocks are retried with exponential
   backoff (with jitter), for ever: the entries wait in Redis, which keeps serving.
6. Streams are trimmed (XTRIM MINID) only below the oldest entry that some consumer
   group has not acknowledged, and never within the last `keep_ms` (an hour), which the
   live change feed replays from.
7. SIGTERM / SIGINT: the batches being written are finished (committed and acknowledged),
   then the worker exits. While the database is down it exits at once, leaving its
   entries pending.
8. Redis behind the ledger (`inventory_cache.behind`): before its first read, after any
   lost Redis connection and every `behind_check_interval_s`, the worker compares Redis
   with the newest entries PostgreSQL committed and marks the groups that are behind
   (their scripts then answer `not_ready` until `warmup` heals them). It reads nothing
   until that check has run, so a restarted Redis's new entries never reach the ledger
   unchecked. An event whose (sku, location, version) is held by another operation
   already is a fork: it is dead-lettered at once (no retries), counted in
   `inventory_worker_version_forks`, logged as an error and its group marked behind.

Several workers may run at once, each with its own consumer name (default
`<host>-<pid>`); two processes must never share a name. Each writes a health record
`<prefix>:worker:<consumer>` (JSON, expires after `health_ttl_s`) and exports Prometheus
metrics (`--metrics-port`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from queue import SimpleQueue
from types import FrameType
from typing import Any

from prometheus_client import Counter, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inventory_cache import behind, heap
from inventory_cache.keys import Keys
from inventory_cache.lag import GROUP, LagGauges
from inventory_cache.settings import Settings
from persistence.events import (
    Entry,
    Event,
    MalformedEvent,
    StreamId,
    first_pending,
    lag_reads,
    parse,
    stream_lag,
    text,
    total_lag,
)
from persistence.ledger import build
from persistence.sink import RejectedBatch, Sink, TransientError, VersionFork

log = logging.getLogger(__name__)

__all__ = ["FORK", "GROUP", "Worker", "WorkerConfig", "run_worker"]

FORK = "version fork"  # how a dead letter's error starts when it forked a version

# The API exports the same two figures under the same names (lag.py).
LAG = LagGauges()
BATCH_SIZE = Histogram(
    "inventory_worker_batch_size",
    "Events per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
FLUSH_SECONDS = Histogram(
    "inventory_worker_flush_seconds",
    "Time to write and commit one batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter("inventory_worker_events", "Events committed to the ledger")
DEAD_LETTERS = Counter("inventory_worker_dead_letters", "Entries moved to the dead-letter stream")
RETRIES = Counter("inventory_worker_retries", "Batches retried after a transient error")
FORKS = Counter(
    "inventory_worker_version_forks",
    "Events refused because another operation holds their (sku, location, version)",
)
GROUPS_BEHIND = Counter(
    "inventory_worker_groups_found_behind", "Slot groups found behind the ledger and marked"
)


@dataclass
class WorkerConfig:
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    group_name: str = GROUP
    batch_size: int = 1000
    block_ms: int = 1000
    # After a read that did not fill a batch, the next waits until this long has passed
    # since the last began (see `_linger`).
    linger_ms: int = 50
    claim_idle_ms: int = 30_000
    claim_interval_s: float = 5.0
    max_deliveries: int = 5
    keep_ms: int = behind.RECENT_MS  # the behind check relies on it
    inspect_interval_s: float = 2.0
    trim_interval_s: float = 10.0
    behind_check_interval_s: float = 5.0
    health_ttl_s: int = 60
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0


class StopRequested(Exception):
    """Raised inside a retry loop when a stop was asked for and the batch cannot finish."""


class Worker:
    """One consumer of the `ledger` group; `run()` loops until `stop()` or a signal.

    `sink` may be several sinks (each its own database connection): as many batches then
    commit at once, one per sink. `database` (the same database through SQLAlchemy)
    enables the behind-the-ledger check (rule 8 of the module doc)."""

    def __init__(
        self,
        redis: Any,
        sink: Sink | Sequence[Sink],
        settings: Settings,
        config: WorkerConfig | None = None,
        *,
        after_commit: Callable[[Sequence[Entry]], None] | None = None,
        database: Any = None,
    ) -> None:
        self.redis = redis
        self.database = database
        self._check_due = database is not None
        self.groups_behind: dict[int, str] = {}
        self.sinks: list[Sink] = list(sink) if isinstance(sink, Sequence) else [sink]
        self._free_sinks: SimpleQueue[Sink] = SimpleQueue()
        for one in self.sinks:
            self._free_sinks.put(one)
        self.settings = settings
        self.config = config or WorkerConfig()
        self.keys = Keys(settings.redis_prefix, settings.slot_groups)
        self.streams = {self.keys.events(g): g for g in self.keys.all_groups()}
        self.cluster = settings.redis_cluster
        self.after_commit = after_commit
        self.retention_ms = settings.idempotency_retention_seconds * 1000
        self.stopping = False
        self.slowest_batch_ms = 0.0
        self.applied = 0
        self.dead = 0
        self.state = "starting"
        self.lag_entries = 0
        self.lag_seconds = 0.0
        # Entries asked of each stream per read: about one batch over all streams, so a
        # worker starting on a backlog does not read (and hold pending) all of it at once.
        self._per_stream = max(16, self.config.batch_size // len(self.streams))
        self._committer = ThreadPoolExecutor(len(self.sinks), thread_name_prefix="ledger-commit")
        self._committing: deque[Future[list[tuple[Entry, str]]]] = deque()
        self._tally = threading.Lock()  # commit threads add to `applied` and the slowest
        self._last = {"claim": 0.0, "inspect": 0.0, "trim": 0.0, "behind": 0.0}
        self._read_at, self._short_read = 0.0, False

    # ------------------------------------------------------------------ lifecycle
    def stop(self, *_: Any) -> None:
        self.stopping = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: finishing the current batch, then stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Own pending entries first, then new ones, until stopped."""
        log.info("worker %s starting on %d streams", self.config.consumer, len(self.streams))
        backoff = self.config.backoff_initial_s
        pending_done = False
        while not self.stopping:
            try:
                if not pending_done:
                    self.ensure_groups()
                    self.drain_own_pending()
                    pending_done = True
                self._step()
                backoff = self.config.backoff_initial_s
            except StopRequested:
                break
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                self.state = "waiting for redis"
                self._check_due = self.database is not None
                self._sleep(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing (Redis flushed?): recreating it")
                pending_done = False
        try:
            self._drain()  # the batches being committed are finished, not abandoned
        except StopRequested:
            pass  # the database is down: its entries stay pending for the next worker
        finally:
            self._committer.shutdown()
        self.state = "stopped"
        self._health()
        log.info("worker %s stopped", self.config.consumer)

    def step(self) -> int:
        """One read (blocking up to `block_ms`), its batches committed, then due
        housekeeping (tests and tools; `run` leaves the last batch committing)."""
        read = self._step()
        self._drain()
        return read

    def _step(self) -> int:
        if self._check_due and not self.check_behind():
            self._sleep(self.config.backoff_max_s)
            return 0
        self.state = "running"
        self._linger()
        self._read_at = time.monotonic()
        entries = self._read(">", self.config.block_ms)
        self._short_read = 0 < len(entries) < self.config.batch_size
        if entries:
            self.handle(entries)
        self.housekeeping()
        return len(entries)

    def _linger(self) -> None:
        """After a short read, wait out `linger_ms` from its start. Each read asks every
        stream and each batch is a transaction, both at a cost that hardly depends on how
        many events they carry: a trickle read as it comes (a few events a read at 2,000
        events/s) cost the worker, Redis and PostgreSQL most of a core between them. A
        backlog (full reads) is read without waiting, and an idle stream's first event
        is read at once (the read blocks until it comes)."""
        if self._short_read:
            self._sleep(self.config.linger_ms / 1000 - (time.monotonic() - self._read_at))

    def housekeeping(self, *, force: bool = False) -> None:
        now = time.monotonic()
        cfg = self.config
        if force or now - self._last["claim"] >= cfg.claim_interval_s:
            self._last["claim"] = now
            self.claim()
        if self.database is not None and (
            force or now - self._last["behind"] >= cfg.behind_check_interval_s
        ):
            self._last["behind"] = now
            self.check_behind()
        if force or now - self._last["inspect"] >= cfg.inspect_interval_s:
            self._last["inspect"] = now
            self.inspect(trim=force or now - self._last["trim"] >= cfg.trim_interval_s)
            if force or now - self._last["trim"] >= cfg.trim_interval_s:
                self._last["trim"] = now

    def check_behind(self) -> bool:
        """Compare Redis with the ledger's marks and mark the groups behind; False when
        PostgreSQL could not be asked (the check stays due). Redis errors propagate."""
        try:
            found = behind.check(self.redis, self.database, self.keys, compact=True)
        except RedisError:
            raise
        except Exception as exc:
            log.warning("could not compare Redis with the ledger (%s); will retry", exc)
            self.state = "waiting for the database"
            return False
        self._check_due = False
        for g, reason in sorted(found.items()):
            log.error("ALARM: slot group %d is behind the ledger (%s): marked not ready", g, reason)
        GROUPS_BEHIND.inc(len(found))
        self.groups_behind.update(found)
        return True

    def ensure_groups(self) -> None:
        """Create the consumer group on every stream (from its first entry) if missing."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, self.config.group_name, id="0", mkstream=True)
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    # ------------------------------------------------------------------ reading
    def _entries(self, reply: Any) -> tuple[list[Entry], list[tuple[str, str]]]:
        """Entries of an XREADGROUP reply, and (stream, id) of those deleted meanwhile."""
        out: list[Entry] = []
        gone: list[tuple[str, str]] = []
        for raw_stream, items in reply or []:
            stream = text(raw_stream)
            group = self.streams[stream]
            for raw_id, fields in items:
                if fields:
                    out.append(Entry(group, text(raw_id), fields))
                else:
                    gone.append((stream, text(raw_id)))
        return out, gone

    def _xreadgroup(self, starts: dict[str, str], count: int, block: int | None) -> Any:
        """One XREADGROUP over many streams; on Redis Cluster, one per stream in a pipeline
        (a command cannot span slots), never blocking."""
        cfg = self.config
        if not self.cluster:
            return self.redis.xreadgroup(
                cfg.group_name, cfg.consumer, starts, count=count, block=block
            )
        pipe = self.redis.pipeline()
        for stream, start in starts.items():
            pipe.xreadgroup(cfg.group_name, cfg.consumer, {stream: start}, count)
        reply = [r for res in pipe.execute() for r in (res or [])]
        if block and not any(items for _, items in reply):
            self._sleep(min(block, 100) / 1000)
        return reply

    def _read(self, start: str, block: int | None) -> list[Entry]:
        reply = self._xreadgroup(dict.fromkeys(self.streams, start), self._per_stream, block)
        entries, gone = self._entries(reply)
        self._ack_ids(gone)
        active = len({e.group for e in entries})
        self._per_stream = max(16, self.config.batch_size // max(active, 1))
        return entries

    def drain_own_pending(self) -> int:
        """Re-read and apply what this consumer read before a crash but never acknowledged
        (its own pending entries, all streams at once, a page of `batch_size` each)."""
        done, count = 0, self.config.batch_size
        starts = dict.fromkeys(self.streams, "0")
        while starts:
            reply = self._xreadgroup(starts, count, None)
            starts = {
                text(stream): text(items[-1][0]) for stream, items in reply if len(items) >= count
            }
            entries, gone = self._entries(reply)
            self._ack_ids(gone)
            if entries:
                self.handle(entries)
                done += len(entries)
        self._drain()
        if done:
            log.info("re-applied %d pending entries of %s", done, self.config.consumer)
        return done

    def claim(self) -> int:
        """Take over entries idle longer than the min-idle time (dead or stuck consumers)."""
        cfg = self.config
        min_idle = int(max(cfg.claim_idle_ms, 3 * self.slowest_batch_ms))
        cursors = dict.fromkeys(self.streams, "0-0")
        claimed = 0
        for _ in range(100):
            pipe = self.redis.pipeline(transaction=False)
            names = list(cursors)
            for stream in names:
                pipe.xautoclaim(
                    stream,
                    cfg.group_name,
                    cfg.consumer,
                    min_idle,
                    cursors[stream],
                    count=cfg.batch_size,
                )
            entries: list[Entry] = []
            cursors = {}
            for stream, res in zip(names, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(res, ResponseError):
                    if "NOGROUP" in str(res):
                        continue
                    raise res
                cursor, items = text(res[0]), res[1]
                found, _ = self._entries([(stream, items)])
                entries.extend(found)
                if cursor != "0-0":
                    cursors[stream] = cursor
            if entries:
                claimed += len(entries)
                self.handle(entries)
            if not cursors:
                break
        self._drain()
        if claimed:
            log.info("claimed %d entries idle for more than %d ms", claimed, min_idle)
        return claimed

    # ------------------------------------------------------------------ applying
    def handle(self, entries: Sequence[Entry]) -> None:
        """Parse entries and hand them to the commit threads in batches; set aside poison.
        Returns with the last batches possibly still committing (see `_drain`)."""
        size = self.config.batch_size
        for i in range(0, len(entries), size):
            events: list[Event] = []
            poison: list[tuple[Entry, str]] = []
            for entry in entries[i : i + size]:
                try:
                    events.append(parse(entry))
                except MalformedEvent as exc:
                    poison.append((entry, f"malformed: {exc}"))
            if poison:
                self._poison(poison)
            while len(self._committing) >= len(self.sinks):
                self._wait_oldest()
            if events:
                self._committing.append(self._committer.submit(self._commit, events))

    def _commit(self, chunk: list[Event]) -> list[tuple[Entry, str]]:
        """In a commit thread: write with a free sink, then acknowledge what was written."""
        sink = self._free_sinks.get()
        try:
            rejected = self._apply(chunk, sink)
        finally:
            self._free_sinks.put(sink)
        bad = {id(entry) for entry, _ in rejected}
        self._ack([ev.entry for ev in chunk if id(ev.entry) not in bad])
        return rejected

    def _wait_oldest(self) -> None:
        """Wait for the oldest batch being committed (its error raises here); set aside
        what the database refused. While it waits (PostgreSQL down: the commit threads
        retry for ever) the lag is measured as usual, so the gauges and the health record
        show the backlog growing instead of the last figure before the outage."""
        oldest = self._committing.popleft()
        while not wait([oldest], timeout=self.config.inspect_interval_s).done:
            self._inspect_while_waiting()
        rejected = oldest.result()
        if rejected:
            self._poison(rejected)

    def _inspect_while_waiting(self) -> None:
        try:
            self.inspect(trim=False)
        except RedisError as exc:
            log.warning("lag not measured while waiting for the database: %s", exc)

    def _drain(self) -> None:
        """Wait for every batch being committed; the first error raises once all ended."""
        first: BaseException | None = None
        while self._committing:
            try:
                self._wait_oldest()
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first

    def _apply(self, chunk: list[Event], sink: Sink) -> list[tuple[Entry, str]]:
        """Commit the chunk, retrying transient errors; returns the entries refused."""
        cfg = self.config
        backoff = cfg.backoff_initial_s
        held = [ev.entry for ev in chunk]
        last_touch = time.monotonic()
        while True:
            started = time.perf_counter()
            try:
                sink.apply(build(chunk, self.retention_ms))
            except TransientError as exc:
                RETRIES.inc()
                if self.stopping:
                    raise StopRequested from exc
                self.state = "waiting for the database"
                log.warning("database unavailable (%s); retrying in %.2fs", exc, backoff)
                self._sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, cfg.backoff_max_s)
                if time.monotonic() - last_touch > cfg.claim_idle_ms / 3000:
                    self._touch(held)
                    last_touch = time.monotonic()
                self._health()
                continue
            except RejectedBatch as exc:
                if len(chunk) == 1:
                    if isinstance(exc, VersionFork):
                        return [(chunk[0].entry, f"{FORK}: {exc}")]
                    return [(chunk[0].entry, f"refused by the database: {exc}")]
                return [bad for ev in chunk for bad in self._apply([ev], sink)]
            break
        elapsed = time.perf_counter() - started
        with self._tally:
            self.slowest_batch_ms = max(self.slowest_batch_ms, elapsed * 1000)
            self.applied += len(chunk)
        FLUSH_SECONDS.observe(elapsed)
        BATCH_SIZE.observe(len(chunk))
        EVENTS.inc(len(chunk))
        if self.after_commit is not None:
            self.after_commit([ev.entry for ev in chunk])
        return []

    def _by_stream(self, entries: Iterable[Entry]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for e in entries:
            out[self.keys.events(e.group)].append(e.id)
        return out

    def _ack(self, entries: Sequence[Entry]) -> None:
        self._ack_ids((self.keys.events(e.group), e.id) for e in entries)

    def _ack_ids(self, ids: Iterable[tuple[str, str]]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for stream, entry_id in ids:
            by_stream[stream].append(entry_id)
        if not by_stream:
            return
        pipe = self.redis.pipeline(transaction=False)
        for stream, entry_ids in by_stream.items():
            pipe.xack(stream, self.config.group_name, *entry_ids)
        pipe.execute(raise_on_error=False)

    def _touch(self, entries: Sequence[Entry]) -> None:
        """Reset the idle time of entries this worker still holds (no new delivery)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for stream, ids in self._by_stream(entries).items():
                pipe.xclaim(
                    stream, self.config.group_name, self.config.consumer, 0, ids, justid=True
                )
            pipe.execute(raise_on_error=False)
        except RedisError as exc:
            log.warning("could not refresh held entries: %s", exc)

    def _poison(self, poison: list[tuple[Entry, str]]) -> None:
        """Dead-letter the entries delivered `max_deliveries` times, and version forks at
        once (marking their groups behind); leave the others pending, to be claimed and
        tried again."""
        cfg = self.config
        pipe = self.redis.pipeline(transaction=False)
        for entry, _ in poison:
            stream = self.keys.events(entry.group)
            pipe.xpending_range(stream, cfg.group_name, entry.id, entry.id, 1)
        dead: list[Entry] = []
        forked: dict[int, str] = {}
        for (entry, error), info in zip(poison, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(info, Exception) or not info:
                continue
            deliveries = int(info[0]["times_delivered"])
            if error.startswith(FORK):
                # Retrying cannot help: the version is taken for good. Refuse it now, and
                # stop the group from handing out more taken versions.
                forked[entry.group] = f"event {entry.position} forks a version: {error}"
                FORKS.inc()
                log.error("ALARM: %s", forked[entry.group])
            elif deliveries < cfg.max_deliveries:
                log.warning(
                    "entry %s (delivery %d of %d) not applied: %s",
                    entry.position,
                    deliveries,
                    cfg.max_deliveries,
                    error,
                )
                continue
            fields: dict[Any, Any] = {
                "dl_stream": self.keys.events(entry.group),
                "dl_id": entry.id,
                "dl_deliveries": deliveries,
                "dl_consumer": cfg.consumer,
                "dl_error": error[:2000],
            }
            fields.update(entry.fields)
            self.redis.xadd(self.keys.dead_letters(), fields)
            dead.append(entry)
            log.error("entry %s moved to %s: %s", entry.position, self.keys.dead_letters(), error)
        self._ack(dead)
        self.dead += len(dead)
        DEAD_LETTERS.inc(len(dead))
        if forked:
            behind.mark(self.redis, self.keys, forked)
            self.groups_behind.update(forked)

    # ------------------------------------------------------------------ lag, trim, health
    def inspect(self, *, trim: bool) -> None:
        """Measure lag on every stream (`persistence.events`, as the API does); with `trim`,
        trim what every consumer group acknowledged."""
        names = list(self.streams)
        pipe = self.redis.pipeline(transaction=False)
        for stream in names:
            pipe.xinfo_groups(stream)
        infos = pipe.execute(raise_on_error=False)
        now_ms = self._redis_ms()
        pipe = self.redis.pipeline(transaction=False)
        asked: list[tuple[str, str, str]] = []
        for stream, groups in zip(names, infos, strict=True):
            if isinstance(groups, Exception):
                continue
            for g in groups:
                name = text(g["name"])
                for command in lag_reads(stream, g, name):
                    # Another group's oldest pending entry bounds the trim; its lag is not ours.
                    if name == self.config.group_name or command[0] == "XPENDING":
                        pipe.execute_command(*command)
                        asked.append((stream, name, command[0]))
        answers = {
            ask: None if isinstance(reply, Exception) else reply
            for ask, reply in zip(asked, pipe.execute(raise_on_error=False), strict=True)
        }
        parts: list[tuple[int, int | None]] = []
        bounds: dict[str, StreamId] = {}
        for stream, groups in zip(names, infos, strict=True):
            if isinstance(groups, Exception):
                continue
            for g in groups:
                name = text(g["name"])
                pending = answers.get((stream, name, "XPENDING"))
                bound = StreamId.parse(g["last-delivered-id"]).next()
                if (first := first_pending(pending)) is not None:
                    bound = min(bound, first)
                bounds[stream] = min(bounds.get(stream, bound), bound)
                if name == self.config.group_name:
                    following = answers.get((stream, name, "XRANGE"))
                    parts.append(stream_lag(g, pending, following))
        lag = total_lag(parts, now_ms)
        self.lag_entries = lag.entries
        self.lag_seconds = lag.seconds
        LAG.set(lag)
        if trim:
            self._trim(bounds, now_ms)
        self._health()

    def _trim(self, bounds: dict[str, StreamId], now_ms: int) -> None:
        keep = StreamId(now_ms - self.config.keep_ms, 0)
        pipe = self.redis.pipeline(transaction=False)
        for stream, bound in bounds.items():
            oldest = min(bound, keep)
            if oldest.ms > 0:
                pipe.xtrim(stream, minid=str(oldest), approximate=False)
        pipe.execute(raise_on_error=False)

    def _redis_ms(self) -> int:
        if self.cluster:
            return int(time.time() * 1000)
        sec, usec = self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def health_key(self) -> str:
        return self.keys.worker_health(self.config.consumer)

    def _health(self) -> None:
        record = {
            "consumer": self.config.consumer,
            "pid": os.getpid(),
            "state": self.state,
            "at": int(time.time() * 1000),
            "applied": self.applied,
            "dead_letters": self.dead,
            "lag_entries": self.lag_entries,
            "lag_seconds": round(self.lag_seconds, 3),
        }
        try:
            self.redis.set(self.health_key(), json.dumps(record), ex=self.config.health_ttl_s)
        except RedisError as exc:
            log.warning("could not write the health record: %s", exc)

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early on stop."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def run_until_idle(self, timeout_s: float = 30.0) -> None:
        """Apply everything currently in the streams, claims included (tests, tools)."""
        deadline = time.monotonic() + timeout_s
        self.ensure_groups()
        self.drain_own_pending()
        while time.monotonic() < deadline:
            entries = self._read(">", None)
            if entries:
                self.handle(entries)
                continue
            self._drain()
            self.housekeeping(force=True)
            if self.lag_entries == 0:
                return
            self._sleep(0.05)
        raise TimeoutError(f"streams not drained within {timeout_s}s")


def run_worker(
    *,
    consumer: str = "",
    batch_size: int = 1000,
    claim_idle_ms: int = 30_000,
    max_deliveries: int = 5,
    metrics_port: int = 0,
    connections: int = 2,
    linger_ms: int = 50,
) -> None:
    """`inventory-cache worker`: configured from INVENTORY_* variables, stops on SIGTERM.

    `connections` database connections commit batches side by side (one on SQLite, whose
    writers would only wait for each other's lock)."""
    from prometheus_client import start_http_server

    from inventory_cache.connection import make_sync_redis
    from inventory_cache.settings import get_settings
    from persistence.db import database_url, is_sqlite, make_engine
    from persistence.sink import make_sink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    config = WorkerConfig(
        batch_size=batch_size,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
        linger_ms=linger_ms,
    )
    if consumer:
        config.consumer = consumer
    if metrics_port:
        start_http_server(metrics_port)
    url = database_url(settings.database_url)
    sinks = [make_sink(url) for _ in range(1 if is_sqlite(url) else connections)]
    database = make_engine(url, pool_size=1, max_overflow=1)
    w = Worker(make_sync_redis(settings), sinks, settings, config, database=database)
    w.install_signal_handlers()
    heap.settle()
    try:
        w.run()
    finally:
        for sink in sinks:
            sink.close()
        database.dispose()
