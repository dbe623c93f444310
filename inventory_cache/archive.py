"""Finished orders and transfers past the retention window, answered from PostgreSQL.

Redis keeps a finished order (shipped, cancelled, expired) or transfer (received,
cancelled) for `INVENTORY_FINISHED_RETENTION_SECONDS` (one day by default), then its keys
expire, so its memory follows live state rather than every order ever taken. The worker
committed it to PostgreSQL long before (seconds after each change), so from then on the
engine asks this archive whenever Redis does not know an order id:

- `GET /v1/reservations/{id}`, and cancel or ship of a finished order, answer what they
  answered while Redis held it (the replay of the same action, or 409 `invalid_state`
  naming the status);
- a reservation retried with the same order id after the window is found here before it
  could lock anything again: the same body replays the first answer, another body is 409
  `idempotency_mismatch`. Where the engine reserves in one script (`reserve_order-2.lua`)
  it asks here before that script: an order found here is finished, and it was in
  PostgreSQL long before its keys left Redis, so Redis could only have answered the same;
  one not found here cannot be finished-and-gone by the time the script runs (its keys
  outlive its finish by the whole window). On the multi-script path (an order spanning
  slot groups on a cluster) the engine has opened the order's index first, so a retry
  racing the keys' expiry is answered once: either it finds the index in Redis, or it
  owns the new index, finds the order here and drops the index again.
- transfers likewise: `GET /v1/transfers/{id}`, a step of a finished transfer (the same
  replay, or 409 `invalid_state`) and a retried request with the same transfer id.
- stored `Idempotency-Key` answers, when they are replayed longer than the window
  (`api/idempotency.py`): Redis keeps each for the window, this table for the rest.

The answer is rebuilt as warmup rebuilds a part: per slot group the lines of the latest
attempt that reserved there, in their first order; then the parts' pre-order lines
(`preorders`), part by part in the order each took them, as the engine lists a finished
order's (no `preorder_status`: the book forgets a settled order's lines). If PostgreSQL
cannot be asked (an error, or no answer within `TIMEOUT_S`), the archive answers None,
logs it, and answers None without asking for `PAUSE_S`: lookups say not found and a
retried order id is taken as new, because the checkout path must keep working while
PostgreSQL is away (a retry of an order finished more than a window ago, arriving during
an outage, is the one case that can lock again).

Every reservation on the one-script path asks (every new order id on the other): the
price of answering a late retry exactly once. Most never reach PostgreSQL: each API
process keeps a Bloom filter of the finished order ids (`FinishedFilter`), read in full
at start and then, every `REFRESH_S`, the ids committed since its last read. An id the
filter rules out is not finished, and no query is made; a true or false positive (one
in a thousand) asks. The filter is trusted only while its last read is younger than
`TRUST_S`: an order's keys outlive its commit by the whole window (a minute at least, a
day by default), so a finish committed after the last read can only be missed if the
worker commits it within `TRUST_S` of the window's end, which is the outage case above.
While the filter is not trusted (not read yet, or PostgreSQL unreachable from this
process) every lookup asks, as follows.

The question asked is only "which of these order ids are finished?", and the ids asked
while one such query is out go together in the next (`Coalesced`): a flash sale of 64
concurrent checkouts costs PostgreSQL a query per round trip, not one per checkout queued
on the connection pool. Only an id found finished costs a second query, for its lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import psycopg
import sqlalchemy as sa
from anyio import to_thread
from rbloom import Bloom

from inventory_cache.engine import reserved_bundles
from inventory_cache.keys import Keys
from inventory_cache.models import Reservation, ReservedLine, Transfer
from persistence.db import libpq_url
from persistence.models import HttpIdempotency, Preorder, ReservationLine
from persistence.models import Reservation as ReservationRow
from persistence.models import Transfer as TransferRow
from persistence.sink import datetime_to_ms, ms_to_datetime

log = logging.getLogger(__name__)
FINISHED = ("cancelled", "expired", "shipped")
T = TypeVar("T")
AnswerRecord = tuple[str, int, bytes, bytes]  # fingerprint, status, content type, body
TIMEOUT_S = 1.0
PAUSE_S = 5.0
BATCH = 500  # order ids per query at most
REFRESH_S = 1.0  # how often the finished-ids filter reads what committed since
TRUST_S = 10.0  # a filter whose last read is older is not trusted: lookups ask
LOAD_TIMEOUT_S = 600.0  # a full read of the finished ids, given up after this
FALSE_POSITIVES = 0.001
MIN_CAPACITY = 100_000


@dataclass(frozen=True, slots=True)
class ArchivedOrder:
    reservation: Reservation
    fingerprint: str  # of the whole order, as the order index keeps it


class Coalesced:
    """A membership question asked by many tasks, answered by one query at a time: the
    keys asked while a query is out wait for the next one, which asks for all of them."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        self._fetch = fetch
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}
        self._drainer: asyncio.Task[None] | None = None

    async def contains(self, key: str) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(key, []).append(answer)
        if self._drainer is None or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        batch: dict[str, list[asyncio.Future[bool]]] = {}
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the ids asked by requests read in the same pass join
                keys = list(self._waiting)[:BATCH]
                batch = {k: self._waiting.pop(k) for k in keys}
                try:
                    found = await self._ask(keys)
                except Exception as exc:
                    for answer in _pending(batch):
                        answer.set_exception(exc)
                else:
                    for key, answers in batch.items():
                        for answer in answers:
                            if not answer.done():
                                answer.set_result(key in found)
                batch = {}
        finally:
            self._drainer = None
            for answer in _pending({**batch, **self._waiting}):
                answer.cancel()

    async def _ask(self, keys: list[str]) -> set[str]:
        """The query, given up after `TIMEOUT_S`: one PostgreSQL never answers must not
        hold every later question."""
        with anyio.move_on_after(TIMEOUT_S):
            return await self._fetch(keys)
        raise TimeoutError(f"no answer within {TIMEOUT_S} s")


def _pending(batch: dict[str, list[asyncio.Future[bool]]]) -> list[asyncio.Future[bool]]:
    return [a for answers in batch.values() for a in answers if not a.done()]


_FINISHED_IDS = "SELECT order_id FROM reservations WHERE order_id = ANY(%s) AND status = ANY(%s)"


class OwnConnection:
    """A psycopg connection that one user keeps to itself: opened on first use (then
    `setup`), closed and forgotten on any failure or cancellation, so that the next use
    connects anew rather than finding a connection in an unknown state."""

    def __init__(
        self,
        url: str,
        setup: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
    ) -> None:
        self._url = libpq_url(url)
        self._setup = setup
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                )
                if self._setup is not None:
                    await self._setup(conn)
            yield conn
        except BaseException:
            self._conn = None
            if conn is not None:
                await conn.close()
            raise

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class PgFinishedIds:
    """Which order ids are finished, asked on a connection of its own from the event loop:
    no worker thread, no pool checkout and ping, no transaction; one round trip (a
    prepared statement) per batch. A connection that failed or was given up is closed,
    and the next batch connects anew."""

    def __init__(self, url: str) -> None:
        self._own = OwnConnection(url)

    async def __call__(self, order_ids: list[str]) -> set[str]:
        async with self._own.use() as conn:
            cur = await conn.execute(_FINISHED_IDS, (order_ids, list(FINISHED)), prepare=True)
            return {row[0] for row in await cur.fetchall()}

    async def aclose(self) -> None:
        await self._own.aclose()


# One snapshot for both statements (REPEATABLE READ): every transaction it does not see
# is still running in it (`xip`) or starts at or after its `xmax`, so the next read asks
# for exactly those and misses no commit, however long a transaction took.
_SNAPSHOT = (
    "SELECT pg_snapshot_xmax(s)::text::bigint,"
    " ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) x)"
    " FROM pg_current_snapshot() s"
)
_COUNT_FINISHED = "SELECT count(*) FROM reservations WHERE finished_xid IS NOT NULL"
# Pages of the finished ids by order id (the primary key), so that a full read holds one
# page at a time and no server-side cursor that a cancelled read could leave open.
_FINISHED_PAGE = (
    "SELECT order_id FROM reservations WHERE finished_xid IS NOT NULL AND order_id > %s"
    " ORDER BY order_id LIMIT %s"
)
LOAD_PAGE = 10_000
_FINISHED_SINCE = (
    "SELECT order_id FROM reservations WHERE finished_xid >= %s OR finished_xid = ANY(%s)"
)


class FinishedFilter:
    """A Bloom filter of the order ids PostgreSQL holds finished (a superset: no finished
    id is ever missing from it), so that a new order id costs no query.

    Each read takes the transactions that finished orders (`reservations.finished_xid`)
    and were not yet visible to the previous read's snapshot. When more ids arrived than
    the filter was sized for, the next read loads every finished id into a filter twice
    the size; until then the old one still answers, only with more false positives.
    """

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._own = OwnConnection(url, _read_only_snapshots)
        self._clock = clock
        self._bloom: Bloom | None = None
        self._capacity = 0
        self._count = 0
        self._since: tuple[int, list[int]] = (0, [])
        self._read_at = -TRUST_S
        self._lock = asyncio.Lock()

    @property
    def ids(self) -> int:
        """Finished ids read into the filter (a repeated read counts again)."""
        return self._count

    @property
    def capacity(self) -> int:
        """The ids the filter was sized for at `FALSE_POSITIVES`."""
        return self._capacity

    def rules_out(self, order_id: str) -> bool:
        """True if `order_id` is certainly not a finished order PostgreSQL holds."""
        fresh = self._clock() - self._read_at < TRUST_S
        return fresh and self._bloom is not None and order_id not in self._bloom

    async def refresh(self) -> None:
        """Read the finished ids committed since the last read (all of them the first time,
        or when the filter is full)."""
        async with self._lock, self._own.use() as conn:
            full = self._bloom is None or self._count > self._capacity
            started = self._clock()
            with anyio.fail_after(LOAD_TIMEOUT_S if full else TRUST_S):
                async with conn.transaction():
                    since = await self._snapshot(conn)
                    await (self._load_all(conn) if full else self._load_since(conn))
            self._since, self._read_at = since, started

    async def run(self) -> None:
        """Refresh every `REFRESH_S` until cancelled; a failure is logged once and retried."""
        failing = False
        while True:
            try:
                await self.refresh()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if not failing:
                    log.warning("finished-ids filter not refreshed (%s): lookups ask", exc)
                failing = True
            else:
                if failing:
                    log.info("finished-ids filter refreshed again")
                failing = False
            await asyncio.sleep(REFRESH_S)

    async def aclose(self) -> None:
        async with self._lock:
            await self._own.aclose()

    async def _load_all(self, conn: psycopg.AsyncConnection[Any]) -> None:
        cur = await conn.execute(_COUNT_FINISHED)
        count = int((await cur.fetchone() or (0,))[0])
        capacity = max(MIN_CAPACITY, 2 * count)
        bloom = Bloom(capacity, FALSE_POSITIVES)
        after = ""
        while True:
            cur = await conn.execute(_FINISHED_PAGE, (after, LOAD_PAGE), prepare=True)
            page = [order_id for (order_id,) in await cur.fetchall()]
            bloom.update(page)
            if len(page) < LOAD_PAGE:
                break
            after = page[-1]
        self._bloom, self._capacity, self._count = bloom, capacity, count

    async def _load_since(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self._bloom is not None
        cur = await conn.execute(_FINISHED_SINCE, self._since, prepare=True)
        ids = [order_id for (order_id,) in await cur.fetchall()]
        self._bloom.update(ids)
        self._count += len(ids)

    @staticmethod
    async def _snapshot(conn: psycopg.AsyncConnection[Any]) -> tuple[int, list[int]]:
        cur = await conn.execute(_SNAPSHOT)
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), list(row[1])


async def _read_only_snapshots(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)


class OrderArchive:
    def __init__(self, db: sa.Engine, keys: Keys) -> None:
        self._db = db
        self._keys = keys
        self._paused_until = 0.0
        self._pg_ids: PgFinishedIds | None = None
        self.filter: FinishedFilter | None = None
        # Order lookups the filter answered, and those that asked PostgreSQL (metrics).
        self.lookups = {"ruled_out": 0, "asked": 0}
        self._filter_task: asyncio.Task[None] | None = None
        if db.dialect.name == "postgresql":
            url = db.url.render_as_string(hide_password=False)
            self._pg_ids = PgFinishedIds(url)
            self._finished = Coalesced(self._pg_ids)
            self.filter = FinishedFilter(url)
        else:  # the embedded SQLite: its blocking driver in a worker thread
            self._finished = Coalesced(self._finished_ids_in_thread)

    def start(self) -> None:
        """Keep the finished-ids filter current from now on (PostgreSQL only); until it is
        read, and without it, every lookup asks."""
        if self.filter is not None and self._filter_task is None:
            self._filter_task = asyncio.create_task(self.filter.run(), name="finished-ids")

    async def aclose(self) -> None:
        if self._filter_task is not None:
            self._filter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filter_task
            self._filter_task = None
        if self.filter is not None:
            await self.filter.aclose()
        if self._pg_ids is not None:
            await self._pg_ids.aclose()

    async def order(self, order_id: str) -> ArchivedOrder | None:
        """The finished order `order_id` as PostgreSQL holds it, or None."""
        if self.filter is not None and self.filter.rules_out(order_id):
            self.lookups["ruled_out"] += 1
            return None
        self.lookups["asked"] += 1
        if not await self._ask_async(partial(self._finished.contains, order_id)):
            return None
        return await self._ask(partial(self._order, order_id))

    async def transfer(self, transfer_id: str) -> tuple[Transfer, str] | None:
        """The finished transfer (received or cancelled) and its fingerprint, or None."""
        return await self._ask(partial(self._transfer, transfer_id))

    async def answer(self, key: str, now_ms: int) -> bytes | None:
        """The stored `Idempotency-Key` record `key` (as Redis holds one), if not expired."""
        return await self._ask(partial(self._answer, key, now_ms))

    async def keep_answer(
        self, key: str, record: AnswerRecord, now_ms: int, expires_ms: int
    ) -> None:
        """Store an `Idempotency-Key` answer (the first one stays)."""
        await self._ask(partial(self._keep_answer, key, record, now_ms, expires_ms))

    async def _ask(self, query: Callable[[], T | None]) -> T | None:
        return await self._ask_async(partial(to_thread.run_sync, query, abandon_on_cancel=True))

    async def _ask_async(self, query: Callable[[], Awaitable[T | None]]) -> T | None:
        if time.monotonic() < self._paused_until:
            return None
        failure: BaseException | None = None
        with anyio.move_on_after(TIMEOUT_S):
            try:
                return await query()
            except (sa.exc.SQLAlchemyError, psycopg.Error, TimeoutError) as exc:
                failure = exc
        if time.monotonic() >= self._paused_until:  # the first of the waiters to fail
            self._paused_until = time.monotonic() + PAUSE_S
            log.warning(
                "archive unavailable (%s): what is not in Redis is taken as unknown for %.0f s",
                failure or f"no answer within {TIMEOUT_S} s",
                PAUSE_S,
            )
        return None

    async def _finished_ids_in_thread(self, order_ids: list[str]) -> set[str]:
        return await to_thread.run_sync(self._finished_ids, order_ids, abandon_on_cancel=True)

    def _finished_ids(self, order_ids: list[str]) -> set[str]:
        r = ReservationRow
        q = sa.select(r.order_id).where(r.order_id.in_(order_ids), r.status.in_(FINISHED))
        with self._db.connect() as conn:
            return set(conn.execute(q).scalars())

    def _order(self, order_id: str) -> ArchivedOrder | None:
        r, ln = ReservationRow, ReservationLine
        q = (
            sa.select(
                r.status.label("order_status"),
                r.fingerprint.label("order_fp"),
                r.expires_at.label("order_exp"),
                ln.token,
                ln.sku,
                ln.position,
                ln.location,
                ln.qty,
                ln.expires_at,
                ln.reserved_at,
                ln.bundles,
            )
            .join(ln, ln.order_id == r.order_id)
            .where(r.order_id == order_id, r.status.in_(FINISHED), ln.status != "released")
            .order_by(ln.token, ln.position)
        )
        p = Preorder
        pq = (
            sa.select(
                r.status.label("order_status"),
                r.fingerprint.label("order_fp"),
                r.expires_at.label("order_exp"),
                p.token,
                p.sku,
                p.seq,
                p.location,
                p.qty,
                p.expected_at,
                p.expires_at,
                p.reserved_at,
            )
            .join(p, p.order_id == r.order_id)
            .where(r.order_id == order_id, r.status.in_(FINISHED), p.status != "released")
            .order_by(p.token, p.sku, p.seq)
        )
        with self._db.connect() as conn:
            rows = conn.execute(q).all()
            pre = conn.execute(pq).all()
        if not rows and not pre:
            return None
        head = (rows or pre)[0]
        return ArchivedOrder(self._rebuild(order_id, list(rows), list(pre)), head.order_fp or "")

    def _answer(self, key: str, now_ms: int) -> bytes | None:
        h = HttpIdempotency
        q = sa.select(h.fingerprint, h.status, h.content_type, h.body).where(
            h.key == key, h.expires_at > ms_to_datetime(now_ms)
        )
        with self._db.connect() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return b"%s %d %s\n%s" % (
            r.fingerprint.encode(),
            r.status,
            r.content_type.encode("latin-1"),
            r.body,
        )

    def _keep_answer(self, key: str, record: AnswerRecord, now_ms: int, expires_ms: int) -> None:
        fp, status, content_type, body = record
        h = HttpIdempotency
        with self._db.begin() as conn:
            # An expired answer of the same key makes way; a live one stays (the first).
            conn.execute(sa.delete(h).where(h.key == key, h.expires_at <= ms_to_datetime(now_ms)))
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(h).values(
                            key=key,
                            fingerprint=fp,
                            status=status,
                            content_type=content_type.decode("latin-1"),
                            body=body,
                            expires_at=ms_to_datetime(expires_ms),
                        )
                    )
            except sa.exc.IntegrityError:
                pass

    def _transfer(self, transfer_id: str) -> tuple[Transfer, str] | None:
        t = TransferRow
        q = sa.select(
            t.transfer_id, t.status, t.sku, t.from_location, t.to_location, t.qty, t.fingerprint
        ).where(t.transfer_id == transfer_id, t.status.in_(("received", "cancelled")))
        with self._db.connect() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return (
            Transfer(r.transfer_id, r.status, r.sku, r.from_location, r.to_location, int(r.qty)),
            r.fingerprint,
        )

    def _rebuild(self, order_id: str, rows: list[Any], pre: Sequence[Any] = ()) -> Reservation:
        """The order's parts: per group, the lines (pre-order lines too) of the latest
        attempt that reserved there; the locked lines of every part, then every part's
        pre-order lines in the order it took them (its lines come sorted by (sku,
        location), and each SKU numbers its lines in that order)."""
        parts: dict[int, list[Any]] = defaultdict(list)
        for row in [*rows, *pre]:
            parts[self._keys.group_of(row.sku)].append(row)
        lines: list[ReservedLine] = []
        pre_lines: list[ReservedLine] = []
        bdl: list[dict[str, Any]] = []
        for g in sorted(parts):
            part = parts[g]
            newest = max(
                part, key=lambda x: (x.reserved_at or x.expires_at or x.order_exp, x.token)
            ).token
            plain = [x for x in part if x.token == newest and "seq" not in x._fields]
            bdl += [{"bdl": x.bundles} for x in plain if x.bundles][:1]
            lines.extend(
                ReservedLine(sku=x.sku, qty=int(x.qty), location=x.location)
                for x in sorted(plain, key=lambda x: x.position)
            )
            pre_lines.extend(
                ReservedLine(
                    sku=x.sku,
                    qty=int(x.qty),
                    location=x.location,
                    preorder=True,
                    expected_at=datetime_to_ms(x.expected_at),
                )
                for x in sorted(
                    (x for x in part if x.token == newest and "seq" in x._fields),
                    key=lambda x: (x.sku, x.seq),
                )
            )
        lines.extend(pre_lines)
        head = (rows or list(pre))[0]
        return Reservation(
            order_id,
            head.order_status,
            datetime_to_ms(head.order_exp),
            lines,
            replayed=True,
            bundles=reserved_bundles(bdl),
        )
