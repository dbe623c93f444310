"""The live change feed: every group's event stream, merged, filtered, resumable.

Positions. Stream entries of different groups have no common order, so the feed makes one:
an entry's position is `(ms, group, seq)` (its stream id split around the group number),
and the feed delivers entries in increasing position. An event id `"<ms>-<group>-<seq>"`
therefore names a position in *every* stream at once: "everything at or before this has
been delivered". Resuming from it reads, per group, the entries after it; nothing is
delivered twice and nothing is skipped.

That holds only if no entry can appear later at a position already delivered. Redis
gives new stream ids the server's clock (a script's start time, or the stream's last id
+ 1 when later), so an entry created after a `TIME` reply of `T` has `ms >= T`. The hub
therefore asks `TIME` *before* each `XREAD` and releases only entries with `ms < T`
(and, for a stream whose read hit COUNT, only up to what it read). The cost is at most
about a millisecond of latency; the price of the rule is that a backwards step of the
Redis host's clock can hide entries created during the step from the feed (never from
the ledger, which reads the streams itself).

One hub per process reads all streams with one blocking `XREAD` and fans entries out to
subscribers' bounded queues without ever waiting for them. A subscriber that falls more
than its queue behind is marked *lagged*: its queue is dropped, and when it asks for more
it re-reads what it missed straight from the streams (at its own pace), then rejoins the
live queue. A slow client thus costs only itself; the HTTP layer also closes a client
that stops reading altogether (see `api/routes/events.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from redis.exceptions import RedisError

from inventory_cache.errors import ValidationError
from inventory_cache.keys import Keys
from persistence.events import StreamId, fields_text, read_rows

log = logging.getLogger(__name__)

MAX_SEQ = 2**64 - 1
# A position's group when it stands for "every group": the end of a millisecond.
ALL_GROUPS = 2**31 - 1
_POSITION = re.compile(r"^(\d{1,15})-(\d{1,10})-(\d{1,20})$")

# Fields of an event that the feed publishes, renamed for readers; the rest (fingerprints,
# attempt tokens, idempotency suffixes) are internal.
_EXTRA_FIELDS = {
    "order": "order_id",
    "tid": "transfer_id",
    "st": "status",
    "exp": "expires_at",
    "lines": "lines",
    "sku": "sku",
    "from": "from_location",
    "to": "to_location",
    "qty": "qty",
    "bundle": "bundle",
    "n": "per_customer",
    "w": "window_seconds",
    "cu": "customer_id",
    "cnt": "counted",
}
_INT_FIELDS = frozenset({"ts", "expires_at", "qty", "per_customer", "window_seconds"})


class Position(NamedTuple):
    """A point in the merged order of all streams: `(ms, group, seq)`."""

    ms: int
    group: int
    seq: int

    def encode(self) -> str:
        return f"{self.ms}-{self.group}-{self.seq}"

    @classmethod
    def parse(cls, text: str, field: str = "Last-Event-ID") -> Position:
        m = _POSITION.match(text.strip())
        if not m:
            raise ValidationError(f"{field} must look like <ms>-<group>-<seq>", field=field)
        pos = cls(int(m[1]), int(m[2]), int(m[3]))
        if pos.group > ALL_GROUPS or pos.seq > MAX_SEQ:
            raise ValidationError(f"{field} is out of range", field=field)
        return pos

    @classmethod
    def end_of(cls, ms: int) -> Position:
        """Everything in every stream up to and including millisecond `ms`."""
        return cls(ms, ALL_GROUPS, MAX_SEQ)

    def first_after(self, group: int) -> StreamId:
        """The smallest stream id of `group` whose entry lies after this position."""
        if group < self.group:
            return StreamId(self.ms + 1, 0)
        if group == self.group:
            return (
                StreamId(self.ms, self.seq + 1) if self.seq < MAX_SEQ else StreamId(self.ms + 1, 0)
            )
        return StreamId(self.ms, 0)

    def last_within(self, group: int) -> StreamId | None:
        """The largest stream id of `group` whose entry lies at or before this position."""
        if group < self.group:
            return StreamId(self.ms, MAX_SEQ)
        if group == self.group:
            return StreamId(self.ms, self.seq)
        return StreamId(self.ms - 1, MAX_SEQ) if self.ms > 0 else None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which rows a subscriber wants; empty sets mean everything."""

    skus: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()

    def select(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [
            r
            for r in rows
            if (not self.skus or r["sku"] in self.skus)
            and (not self.locations or r["location"] in self.locations)
        ]

    @property
    def everything(self) -> bool:
        return not self.skus and not self.locations


def _public_op(f: Mapping[str, str]) -> str:
    """The operation without the attempt token an order's events carry
    (`reserve:<order>:<token>` → `reserve:<order>`): internal, and useless to a reader."""
    op = f.get("op", "")
    order = f.get("order")
    if order is not None and op.startswith(f"{f.get('t', '')}:{order}:"):
        return op[: len(f.get("t", "")) + 1 + len(order)]
    return op


def _preorders(kind: str, raw: Any) -> list[dict[str, Any]]:
    """Pre-order lines: an order's (`[sku, loc, qty, seq, expected_at]`), or those an
    incoming change converted or uncovered (`[order, token, seq, loc, qty, expected_at,
    state]`, the token left out)."""
    if not isinstance(raw, list):
        return []
    if kind == "incoming":
        return [
            {"order_id": o, "location": loc, "qty": int(q), "expected_at": int(e), "state": st}
            for o, _tok, _seq, loc, q, e, st in raw
        ]
    return [
        {"sku": s, "location": loc, "qty": int(q), "expected_at": int(e)}
        for s, loc, q, _seq, e in raw
    ]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One stream entry as readers see it: its position and its public content."""

    position: Position
    body: dict[str, Any]

    @classmethod
    def from_entry(cls, group: int, entry_id: bytes | str, raw: Mapping[bytes, bytes]) -> FeedEvent:
        ms, seq = StreamId.parse(entry_id)
        f = fields_text(raw)
        rows = [
            {
                "sku": r.sku,
                "location": r.location,
                "delta_on_hand": r.d_on_hand,
                "delta_locked": r.d_locked,
                "on_hand": r.on_hand,
                "locked": r.locked,
                "safety_stock": r.safety_stock,
                "available": r.available,
            }
            for r in read_rows(f.get("rows"))
        ]
        pos = Position(ms, group, seq)
        body: dict[str, Any] = {
            "id": pos.encode(),
            "type": f.get("t", ""),
            "op": _public_op(f),
            "ref": f.get("ref", ""),
            "reason": f.get("reason", ""),
            "ts": int(f.get("ts", ms)),
            "rows": rows,
        }
        if f.get("bdl"):
            body["bundles"] = [
                {
                    "sku": b,
                    "qty": int(n),
                    "location": loc or None,
                    "components": [{"sku": c, "qty": int(n) * int(q)} for c, q in comps],
                }
                for b, n, loc, comps in orjson.loads(f["bdl"])
            ]
        if "comps" in f:
            body["components"] = [
                {"sku": c, "qty": int(q)}
                for c, q in (orjson.loads(f["comps"]) if f["comps"] else [])
            ]
        if "in" in f:
            sku, loc, qty, exp, status, got = orjson.loads(f["in"])
            body["incoming"] = {
                "sku": sku,
                "location": loc,
                "qty": int(qty),
                "expected_at": int(exp),
                "status": status,
                "received_qty": int(got),
            }
        if f.get("pre"):
            body["preorders"] = _preorders(f.get("t", ""), orjson.loads(f["pre"]))
        if "pl" in f:
            body["preorder_limit"] = int(orjson.loads(f["pl"])[2])
        for name, public in _EXTRA_FIELDS.items():
            if name in f:
                value: Any = f[name]
                if public == "lines":
                    parsed = orjson.loads(value)
                    value = [
                        {"sku": s, "location": loc, "qty": int(q)}
                        for s, loc, q in (parsed if isinstance(parsed, list) else [])
                    ]
                elif public == "counted":
                    parsed = orjson.loads(value)
                    value = [
                        {"sku": s, "qty": int(q)}
                        for s, q, _gen in (parsed if isinstance(parsed, list) else [])
                    ]
                elif public in _INT_FIELDS:
                    value = int(value)
                body[public] = value
        return cls(pos, body)

    def view(self, flt: Filter) -> dict[str, Any] | None:
        """The event as `flt` sees it (only its rows), or None when no row is wanted. An
        event with no rows about one SKU (a limit, a bundle definition) holds at every
        location: it is wanted when its SKU is, whatever the locations."""
        if flt.everything:
            return self.body
        if not self.body["rows"]:
            subject = self.body.get("sku", self.body.get("bundle"))
            wanted = subject is not None and (not flt.skus or subject in flt.skus)
            return self.body if wanted else None
        rows = flt.select(self.body["rows"])
        if not rows:
            return None
        return {**self.body, "rows": rows}


def _parse(group: int, entry_id: bytes | str, raw: Mapping[bytes, bytes]) -> FeedEvent | None:
    """The entry as an event; a malformed one is logged and left out (the worker sends
    it to the dead letters), never allowed to stop the feed."""
    try:
        return FeedEvent.from_entry(group, entry_id, raw)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        log.warning("feed: skipping malformed entry %r of group %d (%r)", entry_id, group, exc)
        return None


class CatchupBudget:
    """Catch-up entries per second for every reader of one process together.

    Readers that resume read as fast as the event loop lets them, and a cheaper entry
    only lets them read more: isolation needs a bound on their share. Each slice of a
    catch-up read takes its entries from this budget; a reader over it waits, in the
    order they asked (the debt of those before it is its wait). Live delivery (the hub's
    queue) does not count.
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = per_second  # a second's worth at once
        self._at = clock()

    def wait_for(self, entries: int) -> float:
        """Take `entries`; the seconds the taker must wait before reading them."""
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        self._tokens -= entries
        return max(0.0, -self._tokens / self.per_second)


async def read_range(
    client: Any,
    keys: Keys,
    after: Position,
    upto: Position,
    *,
    page: int | None = None,
    budget: int = 2048,
    gate: asyncio.Semaphore | None = None,
    slice_events: int = 64,
    pace: CatchupBudget | None = None,
) -> AsyncIterator[FeedEvent]:
    """Entries of every group with `after < position <= upto`, in position order.

    A k-way merge of per-group XRANGE pages, so what a reader holds is bounded whatever
    the range (a reader resuming from the first entry of streams holding 100k entries
    holds one page per group, never the range):
    - a page is `page` entries, by default `budget` entries shared by the groups that
      have any in range (8 each with 256 groups), kept raw and parsed only when due;
    - when a group's page runs out, every group whose page is at most half full is
      topped up in the same pipeline, so a read costs a round trip per few thousand
      entries, not per group and page;
    - each round trip waits for `gate` (the hub's, shared by every reader of the
      process), which bounds the Redis connections and the parsing that catch-up reads
      take at once, however many readers resume together;
    - every `slice_events` entries it yields to the event loop, so a long catch-up never
      holds the loop for more than a slice, and with `pace` (the hub's budget) it waits
      there for as long as the process's catch-up entries per second require.
    """
    bounds: dict[int, tuple[StreamId, StreamId]] = {}
    for g in keys.all_groups():
        lo, hi = after.first_after(g), upto.last_within(g)
        if hi is not None and lo <= hi:
            bounds[g] = (lo, hi)
    if not bounds:
        return
    size = page or max(4, budget // len(bounds))
    buffers: dict[int, deque[tuple[Position, Any, Any]]] = {g: deque() for g in bounds}
    more: dict[int, bool] = dict.fromkeys(bounds, True)

    async def fetch(groups: Sequence[int]) -> None:
        """Top up these groups' pages; a group ends non-empty or its range exhausted."""
        while groups:
            counts = [size - len(buffers[g]) for g in groups]
            async with gate or contextlib.nullcontext():
                pipe = client.pipeline(transaction=False)
                for g, count in zip(groups, counts, strict=True):
                    lo, hi = bounds[g]
                    pipe.xrange(keys.events(g), str(lo), str(hi), count=count)
                replies = await pipe.execute()
            for g, count, entries in zip(groups, counts, replies, strict=True):
                for entry_id, raw in entries:
                    ms, seq = StreamId.parse(entry_id)
                    buffers[g].append((Position(ms, g, seq), entry_id, raw))
                more[g] = len(entries) == count
                if entries:
                    bounds[g] = (StreamId.parse(entries[-1][0]).next(), bounds[g][1])
            groups = [g for g in groups if not buffers[g] and more[g]]

    await fetch(sorted(bounds))
    heap = [(buf[0][0], g) for g, buf in buffers.items() if buf]
    heapq.heapify(heap)
    sent = 0
    while heap:
        _, g = heapq.heappop(heap)
        buf = buffers[g]
        _, entry_id, raw = buf.popleft()
        event = _parse(g, entry_id, raw)
        if event is not None:
            yield event
        sent += 1
        if sent % slice_events == 0:
            await asyncio.sleep(pace.wait_for(slice_events) if pace else 0)
        if not buf and more[g]:
            # Every other group with entries left is in the heap with its head, which a
            # top-up leaves in place; only `g` needs pushing back.
            await fetch([h for h in bounds if more[h] and len(buffers[h]) <= size // 2])
        if buf:
            heapq.heappush(heap, (buf[0][0], g))


@dataclass(eq=False)
class Subscription:
    """One reader's bounded queue; the hub only ever appends to it, never waits for it."""

    filter: Filter
    limit: int
    queue: deque[FeedEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: bool = False
    lag_count: int = 0

    def offer(self, event: FeedEvent) -> None:
        if self.lagged:
            return
        if len(self.queue) >= self.limit:
            self.queue.clear()
            self.lagged = True
            self.lag_count += 1
        else:
            self.queue.append(event)
        self.wake.set()


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Nothing new for this reader up to `position` (sent so its resume point advances)."""

    position: Position


@dataclass(frozen=True, slots=True)
class Tick:
    """Nothing new yet (see `follow`'s `tick_seconds`); not sent to the reader."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Changes after the reader's resume point were trimmed from these groups' streams
    (the worker keeps an hour once written to PostgreSQL): the reader cannot be told
    them and should reload the state it shows. The feed goes on from what remains."""

    groups: tuple[int, ...]


async def trimmed_after(client: Any, keys: Keys, after: Position) -> tuple[int, ...]:
    """Groups whose stream no longer holds every entry after `after`.

    Redis does not record where a trim cut (`max-deleted-entry-id` ignores XTRIM), so a
    group counts when entries were ever removed from it and its oldest remaining entry
    lies beyond the first one `after` has not seen. That overstates only for a reader
    whose resume point is exactly the last entry removed.
    """
    groups = list(keys.all_groups())
    pipe = client.pipeline(transaction=False)
    for g in groups:
        pipe.xinfo_stream(keys.events(g))
    out = []
    for g, info in zip(groups, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(info, Exception) or int(info["entries-added"]) <= int(info["length"]):
            continue  # no stream yet, or nothing ever removed from it
        first = info.get("first-entry")
        if first:
            oldest = StreamId.parse(first[0])
        else:  # emptied: everything up to the last id is gone
            oldest = StreamId.parse(info["last-generated-id"]).next()
        if after.first_after(g) < oldest:
            out.append(g)
    return tuple(out)


class FeedHub:
    """Reads every group's stream for all subscribers of this process.

    The reading task runs only while someone subscribes, so no start/stop hooks are
    needed: the first subscriber starts it, the last one to leave stops it.
    """

    def __init__(
        self,
        client: Any,
        keys: Keys,
        *,
        queue_limit: int = 1000,
        block_ms: int = 1000,
        page: int = 1000,
        retry_seconds: float = 0.5,
        poll_ms: int = 20,
        catchup_concurrency: int = 4,
        catchup_per_second: float = 0,
    ) -> None:
        self.client = client
        # Catch-up reads (resumes, lagged readers) of every reader of this process take
        # turns through this gate: at most this many Redis connections and parsing
        # slices at once, whether 2 or 1,000 readers resume (see `read_range`) ...
        self.catchup = asyncio.Semaphore(catchup_concurrency)
        # ... and take at most this many entries a second between them (0: no bound).
        self.catchup_budget = CatchupBudget(catchup_per_second) if catchup_per_second else None
        self._starting = asyncio.Lock()
        self.keys = keys
        self.queue_limit = queue_limit
        self.block_ms = block_ms
        self.page = page
        self.retry_seconds = retry_seconds
        self.released = Position(0, 0, 0)
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._read_ids: dict[int, StreamId] = {}
        self._pending: list[tuple[Position, FeedEvent]] = []
        self._cluster = _is_cluster(client)
        self._clock_offset_ms = 0.0  # server clock minus ours, from the last TIME
        self.poll_ms = poll_ms

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _server_ms(self) -> int:
        """Redis's clock; on a cluster the slowest primary's, which bounds them all."""
        if self._cluster:
            reply = await self.client.execute_command("TIME", target_nodes="primaries")
            times = list(reply.values()) if isinstance(reply, dict) else [reply]
        else:
            times = [await self.client.time()]
        return min(int(sec) * 1000 + int(usec) // 1000 for sec, usec in times)

    async def _start(self) -> None:
        sent = time.time()
        now = await self._server_ms()
        if self._task is not None and not self._task.done():
            return  # another subscriber started it while we asked the time
        self._clock_offset_ms = now - (sent + time.time()) * 500
        self.released = Position.end_of(now - 1)
        self._read_ids = {g: StreamId(now - 1, MAX_SEQ) for g in self.keys.all_groups()}
        self._pending = []
        self._task = asyncio.create_task(self._run(), name="feed-hub")

    @contextlib.asynccontextmanager
    async def subscribe(self, flt: Filter) -> AsyncIterator[Subscription]:
        """Register a reader; on entry `self.released` is where its live queue starts."""
        if self._task is None or self._task.done():
            # One start for a crowd arriving at once (one TIME call, not one each).
            async with self._starting:
                if self._task is None or self._task.done():
                    await self._start()
        sub = Subscription(flt, self.queue_limit)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            if not self._subs and self._task is not None:
                task, self._task = self._task, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("feed: reading the event streams failed (%s); retrying", exc)
                await asyncio.sleep(self.retry_seconds)
            except Exception:  # a bug must not silence every reader for good
                log.exception("feed: reading the event streams failed; retrying")
                await asyncio.sleep(self.retry_seconds)

    async def _step(self) -> None:
        if self._pending:
            # Held entries wait for the server's clock to pass their millisecond; the
            # next read is sent at once if our estimate of that clock says it has.
            ahead = self._pending[0][0].ms + 1 - self._estimated_server_ms()
            if ahead > 0:
                await asyncio.sleep(min(ahead, 2.0) / 1000)
        now, replies = await self._read(block=not self._pending)
        bound = Position.end_of(now - 1)
        got = 0
        for g, entries in replies:
            for entry_id, raw in entries:
                ev = _parse(g, entry_id, raw)
                if ev is not None:
                    heapq.heappush(self._pending, (ev.position, ev))
            if entries:
                got += len(entries)
                self._read_ids[g] = StreamId.parse(entries[-1][0])
            if len(entries) >= self.page:
                ms, seq = self._read_ids[g]
                bound = min(bound, Position(ms, g, seq))
        self._release(bound)
        if self._cluster and not got and not self._pending:
            await asyncio.sleep(self.poll_ms / 1000)

    def _estimated_server_ms(self) -> float:
        return time.time() * 1000 + self._clock_offset_ms

    async def _read(self, *, block: bool) -> tuple[int, list[tuple[int, list[Any]]]]:
        """The server's time, then the new entries of every group after the read ids.

        The time is taken *before* the read, so whatever is older than it has been read
        (the completeness `_step` relies on). On a single Redis both go in one pipeline
        (one round trip; Redis runs them in order), the read being one XREAD over every
        stream that blocks until something comes. A cluster has no multi-slot commands:
        the time of every primary, then one XREAD per group, polled.
        """
        if self._cluster:
            now = await self._server_ms()
            groups = list(self._read_ids)
            pipe = self.client.pipeline(transaction=False)
            for g in groups:
                pipe.xread({self.keys.events(g): str(self._read_ids[g])}, count=self.page)
            replies = await pipe.execute()
            return now, [(g, r[0][1]) for g, r in zip(groups, replies, strict=True) if r]
        streams = {self.keys.events(g): str(i) for g, i in self._read_ids.items()}
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.xread(streams, count=self.page, block=self.block_ms if block else None)
        sent = time.time()
        (sec, usec), reply = await pipe.execute()
        now = int(sec) * 1000 + int(usec) // 1000
        if not block:  # after a blocking read the time is as old as the wait
            self._clock_offset_ms = now - (sent + time.time()) * 500
        group_of = {self.keys.events(g): g for g in self._read_ids}
        return now, [
            (group_of[key.decode() if isinstance(key, bytes) else key], entries)
            for key, entries in reply or []
        ]

    def _release(self, bound: Position) -> None:
        while self._pending and self._pending[0][0] <= bound:
            _, ev = heapq.heappop(self._pending)
            for sub in self._subs:
                if ev.view(sub.filter) is not None:
                    sub.offer(ev)
        self.released = max(self.released, bound)


async def follow(
    hub: FeedHub,
    flt: Filter,
    after: Position | None,
    *,
    keepalive_seconds: float = 15.0,
    page: int | None = None,
    tick_seconds: float | None = None,
) -> AsyncGenerator[FeedEvent | KeepAlive | Gap | Tick, None]:
    """The events `flt` wants after `after` (or from now), then live, forever.

    Yields a `KeepAlive` first (the reader's starting position), then a `Gap` if the
    streams lost part of what it missed, and a `KeepAlive` whenever nothing came for
    `keepalive_seconds`. Catch-up reads (a resume, or a lag) go to the streams
    directly; the live queue is used from the hub's released position on, and anything
    at or before the last position handed out is skipped, so each event comes once.
    With `tick_seconds`, an idle reader also gets a `Tick` that often (nothing to send:
    a chance for its owner to check on it, e.g. that its API key is still valid).
    """
    loop = asyncio.get_running_loop()
    wait_s = keepalive_seconds if tick_seconds is None else min(tick_seconds, keepalive_seconds)
    async with hub.subscribe(flt) as sub:
        last = hub.released if after is None else after
        backlog: Position | None = hub.released if last < hub.released else None
        yield KeepAlive(last)
        quiet_since = loop.time()
        if backlog is not None:
            async with hub.catchup:
                lost = await trimmed_after(hub.client, hub.keys, last)
            if lost:
                yield Gap(lost)
        while True:
            if sub.lagged:
                # Sync with the hub in one step: it re-fills the queue after `released`.
                sub.lagged, backlog = False, hub.released
                sub.queue.clear()
            if backlog is not None:
                upto, backlog = backlog, None
                async for ev in read_range(
                    hub.client,
                    hub.keys,
                    last,
                    upto,
                    page=page,
                    gate=hub.catchup,
                    pace=hub.catchup_budget,
                ):
                    if ev.view(flt) is not None:
                        yield ev
                        last = ev.position
                        quiet_since = loop.time()
                last = max(last, upto)
                continue
            if sub.queue:
                ev = sub.queue.popleft()
                if ev.position > last:
                    yield ev
                    last = ev.position
                    quiet_since = loop.time()
                continue
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), wait_s)
            except TimeoutError:
                if not sub.queue and not sub.lagged:
                    if loop.time() - quiet_since >= keepalive_seconds - 0.001:
                        last = max(last, hub.released)
                        quiet_since = loop.time()
                        yield KeepAlive(last)
                    else:
                        yield Tick()


def _is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def make_filter(skus: Collection[str], locations: Collection[str]) -> Filter:
    return Filter(frozenset(skus), frozenset(locations))
