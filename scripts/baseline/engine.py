"""`PgStockEngine`: StockEngine's reserve / cancel / ship / availability in PostgreSQL alone.

This is the design a team would reach for without Redis, written as well as it is usually
written: one transaction per operation, a conditional
`UPDATE baseline_stock SET locked = locked + qty WHERE ... AND on_hand - locked -
safety_stock >= qty` (READ COMMITTED re-checks the condition on the newest row version
after waiting for a row lock, so concurrent buyers never oversell), the ledger row inserted
by the same statement, the order id's primary key as the idempotency record, and
server-side prepared statements through a psycopg connection pool.

The method shapes, models and errors are those of `StockEngine`, so the benchmarks and the
HTTP baseline drive both the same way. A reservation past its TTL is released when it is
next touched (cancel, ship, read) or by `expire_due`; the baseline has no scheduler.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from inventory_cache import validation as v
from inventory_cache.engine import Clock, StockEngine, fingerprint, wall_clock_ms
from inventory_cache.errors import (
    IdempotencyMismatch,
    InsufficientStock,
    InvalidState,
    NotFound,
    ValidationError,
)
from inventory_cache.models import (
    Availability,
    Level,
    LineRequest,
    Reservation,
    ReservationStatus,
    ReservedLine,
    StockView,
)
from persistence.events import available

T = TypeVar("T")
Conn = AsyncConnection[Any]

# Deadlocks are possible when orders lock several rows; PostgreSQL aborts one side.
_RETRIES = 3
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)

_LEDGER_COLUMNS = (
    "op_id, sku, location, type, reason, ref,"
    " delta_on_hand, delta_locked, on_hand_after, locked_after"
)

# Locks `qty` at the first location (the given one, else by priority then name) that has
# it free, and writes the ledger row, in one statement. No row back: no location had it
# (or a concurrent buyer took it between the pick and the row lock).
_RESERVE_ONE_PLACE = f"""
WITH pick AS (
    SELECT sku, location FROM baseline_stock
    WHERE sku = %(sku)s AND (%(loc)s::text IS NULL OR location = %(loc)s::text)
      AND on_hand - locked - safety_stock >= %(qty)s::bigint
    ORDER BY coalesce(array_position(%(prio)s::text[], location), 2147483647), location
    LIMIT 1
), s AS (
    UPDATE baseline_stock AS b SET locked = b.locked + %(qty)s::bigint
    FROM pick
    WHERE b.sku = pick.sku AND b.location = pick.location
      AND b.on_hand - b.locked - b.safety_stock >= %(qty)s::bigint
    RETURNING b.sku, b.location, b.on_hand, b.locked
), m AS (
    INSERT INTO baseline_movements ({_LEDGER_COLUMNS})
    SELECT %(op)s, s.sku, s.location, 'reserve', 'reserve', %(ref)s,
           0, %(qty)s::bigint, s.on_hand, s.locked
    FROM s
)
SELECT location FROM s
"""

# Applies a change to one (sku, location) and writes its ledger row.
_CHANGE = f"""
WITH s AS (
    UPDATE baseline_stock
    SET on_hand = on_hand + %(d_on_hand)s::bigint, locked = locked + %(d_locked)s::bigint
    WHERE sku = %(sku)s AND location = %(loc)s
    RETURNING sku, location, on_hand, locked, safety_stock
), m AS (
    INSERT INTO baseline_movements ({_LEDGER_COLUMNS})
    SELECT %(op)s, s.sku, s.location, %(type)s, %(type)s, %(ref)s,
           %(d_on_hand)s::bigint, %(d_locked)s::bigint, s.on_hand, s.locked
    FROM s
)
SELECT on_hand, locked, safety_stock FROM s
"""

_LEVELS = (
    "SELECT sku, location, on_hand, locked, safety_stock FROM baseline_stock"
    " WHERE sku = ANY(%s::text[]) ORDER BY sku, location"
)


def _plain_dsn(dsn: str) -> str:
    """Accept the service's SQLAlchemy-style URL too; psycopg wants plain `postgresql://`."""
    return dsn.replace("postgresql+psycopg://", "postgresql://", 1)


def _level(sku: str, loc: str, on_hand: int, locked: int, safety: int) -> Level:
    return Level(sku, loc, on_hand, locked, safety, available(on_hand, locked, safety))


class PgStockEngine:
    """The PostgreSQL-only counterpart of `StockEngine` (same method shapes and models)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        *,
        location_priority: Sequence[str] = (),
        reservation_ttl_seconds: int = 900,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.pool = pool
        self.priority = list(location_priority)
        self.ttl = reservation_ttl_seconds
        self.now = clock

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        pool_size: int = 8,
        synchronous_commit: bool = True,
        location_priority: Sequence[str] = (),
        reservation_ttl_seconds: int = 900,
        clock: Clock = wall_clock_ms,
    ) -> PgStockEngine:
        """Open a pool of `pool_size` autocommit connections (writes open transactions).

        `synchronous_commit=False` trades the last fraction of a second of commits on a
        crash for speed: the durability Redis with AOF `everysec` gives the service.
        """
        kwargs: dict[str, Any] = {"autocommit": True}
        if not synchronous_commit:
            kwargs["options"] = "-c synchronous_commit=off"
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            _plain_dsn(dsn), min_size=pool_size, max_size=pool_size, kwargs=kwargs, open=False
        )
        await pool.open(wait=True)
        return cls(
            pool,
            location_priority=location_priority,
            reservation_ttl_seconds=reservation_ttl_seconds,
            clock=clock,
        )

    async def close(self) -> None:
        await self.pool.close()

    async def _retrying(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection, again if PostgreSQL aborted it for a deadlock."""
        for attempt in range(_RETRIES):
            try:
                async with self.pool.connection() as conn:
                    return await work(conn)
            except _RETRYABLE:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ reads
    async def _levels(self, skus: Sequence[str]) -> dict[str, dict[str, Level]]:
        out: dict[str, dict[str, Level]] = {s: {} for s in skus}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_LEVELS, (list(skus),))
            for sku, loc, on_hand, locked, safety in await cur.fetchall():
                out[sku][loc] = _level(sku, loc, on_hand, locked, safety)
        return out

    @staticmethod
    def _availability(sku: str, levels: dict[str, Level]) -> Availability:
        locations = {loc: lv.available for loc, lv in levels.items()}
        total = sum(locations.values())
        return Availability(sku=sku, available=total, in_stock=total > 0, locations=locations)

    async def availability(self, sku: str) -> Availability:
        v.ident(sku, "sku")
        return self._availability(sku, (await self._levels([sku]))[sku])

    async def availability_many(self, skus: Sequence[str]) -> list[Availability]:
        if not 1 <= len(skus) <= v.MAX_BATCH_SKUS:
            raise ValidationError(f"ask for 1 to {v.MAX_BATCH_SKUS} SKUs", field="sku")
        for sku in skus:
            v.ident(sku, "sku")
        levels = await self._levels(skus)
        return [self._availability(s, levels[s]) for s in skus]

    async def stock(self, sku: str) -> StockView:
        v.ident(sku, "sku")
        return StockView(sku=sku, locations=(await self._levels([sku]))[sku])

    # ------------------------------------------------------------------ inbound
    async def inbound(self, *, ref: str, sku: str, location: str, qty: int) -> Level:
        """Receive goods; a retry with the same ref, SKU and location changes nothing."""
        v.ident(ref, "ref"), v.ident(sku, "sku"), v.ident(location, "location"), v.qty(qty)
        op = f"inbound:{ref}"

        async def work(conn: Conn) -> Level:
            async with conn.transaction():
                claimed = await conn.execute(
                    f"INSERT INTO baseline_movements ({_LEDGER_COLUMNS})"
                    " VALUES (%s, %s, %s, 'inbound', 'inbound', %s, %s, 0, 0, 0)"
                    " ON CONFLICT (op_id, sku, location) DO NOTHING RETURNING id",
                    (op, sku, location, ref, qty),
                )
                if await claimed.fetchone() is None:
                    return await self._inbound_replay(conn, op, sku, location, qty)
                cur = await conn.execute(
                    "INSERT INTO baseline_stock (sku, location, on_hand) VALUES (%s, %s, %s)"
                    " ON CONFLICT (sku, location)"
                    " DO UPDATE SET on_hand = baseline_stock.on_hand + EXCLUDED.on_hand"
                    " RETURNING on_hand, locked, safety_stock",
                    (sku, location, qty),
                )
                row = await cur.fetchone()
                assert row is not None
                await conn.execute(
                    "UPDATE baseline_movements SET on_hand_after = %s, locked_after = %s"
                    " WHERE op_id = %s AND sku = %s AND location = %s",
                    (row[0], row[1], op, sku, location),
                )
                return _level(sku, location, *row)

        return await self._retrying(work)

    async def _inbound_replay(
        self, conn: Conn, op: str, sku: str, location: str, qty: int
    ) -> Level:
        cur = await conn.execute(
            "SELECT delta_on_hand FROM baseline_movements"
            " WHERE op_id = %s AND sku = %s AND location = %s",
            (op, sku, location),
        )
        row = await cur.fetchone()
        if row is None or row[0] != qty:
            raise IdempotencyMismatch(f"{op} was received with another quantity")
        levels = await conn.execute(
            "SELECT on_hand, locked, safety_stock FROM baseline_stock"
            " WHERE sku = %s AND location = %s",
            (sku, location),
        )
        now = await levels.fetchone()
        assert now is not None
        return Level(sku, location, now[0], now[1], now[2], available(*now), True)

    # ------------------------------------------------------------------ reservations
    async def reserve(
        self, *, order_id: str, lines: Sequence[LineRequest], ttl_seconds: int | None = None
    ) -> Reservation:
        """Lock every line or none, in one transaction; the order id makes retries replay."""
        v.ident(order_id, "order_id")
        merged = sorted(StockEngine.merge_lines(lines), key=lambda ln: (ln.sku, ln.location or ""))
        ttl = v.ttl(self.ttl if ttl_seconds is None else ttl_seconds, 30 * 86400)
        canon = sorted((ln.sku, ln.location or "", ln.qty) for ln in merged)
        fp = fingerprint({"order_id": order_id, "lines": canon, "ttl": ttl})
        exp = self.now() + ttl * 1000

        async def work(conn: Conn) -> Reservation:
            async with conn.transaction():
                out: list[ReservedLine] = []
                short: list[dict[str, Any]] = []
                for i, ln in enumerate(merged):
                    got = await self._reserve_line(conn, order_id, i, ln)
                    if got is None:
                        short.append(await self._shortfall(conn, ln))
                    else:
                        out.extend(got)
                if short:
                    raise InsufficientStock(short)
                await conn.execute(
                    "INSERT INTO baseline_reservations"
                    " (order_id, status, fingerprint, expires_at, lines)"
                    " VALUES (%s, 'active', %s, %s, %s::jsonb)",
                    (
                        order_id,
                        fp,
                        exp,
                        orjson.dumps([[r.sku, r.location, r.qty] for r in out]).decode(),
                    ),
                )
            return Reservation(order_id, "active", exp, out)

        try:
            return await self._retrying(work)
        except pg_errors.UniqueViolation:
            # The order id was reserved before (or by a concurrent retry that committed
            # first); this attempt's locks were rolled back with its transaction.
            known, known_fp = await self._stored(order_id)
            if known_fp != fp:
                raise IdempotencyMismatch(
                    f"order {order_id} was reserved with other lines"
                ) from None
            return known

    async def _reserve_line(
        self, conn: Conn, order_id: str, i: int, ln: LineRequest
    ) -> list[ReservedLine] | None:
        params = {
            "sku": ln.sku,
            "loc": ln.location,
            "qty": ln.qty,
            "prio": self.priority,
            "op": f"reserve:{order_id}:{i}",
            "ref": order_id,
        }
        cur = await conn.execute(_RESERVE_ONE_PLACE, params)
        row = await cur.fetchone()
        if row is not None:
            return [ReservedLine(ln.sku, ln.qty, row[0])]
        if ln.location is not None:
            return None
        return await self._reserve_split(conn, order_id, i, ln)

    async def _reserve_split(
        self, conn: Conn, order_id: str, i: int, ln: LineRequest
    ) -> list[ReservedLine] | None:
        """No one location has the whole line: lock every location of the SKU and split."""
        cur = await conn.execute(
            "SELECT location, on_hand - locked - safety_stock FROM baseline_stock"
            " WHERE sku = %s ORDER BY location FOR UPDATE",
            (ln.sku,),
        )
        free = {loc: f for loc, f in await cur.fetchall() if f > 0}
        order = [p for p in self.priority if p in free]
        order += sorted(loc for loc in free if loc not in order)
        if sum(free.values()) < ln.qty:
            return None
        picks: list[ReservedLine] = []
        need = ln.qty
        for loc in order:
            take = min(free[loc], need)
            if take <= 0:
                break
            await conn.execute(
                _CHANGE,
                {
                    "sku": ln.sku,
                    "loc": loc,
                    "d_on_hand": 0,
                    "d_locked": take,
                    "op": f"reserve:{order_id}:{i}",
                    "type": "reserve",
                    "ref": order_id,
                },
            )
            picks.append(ReservedLine(ln.sku, take, loc))
            need -= take
        return picks

    async def _shortfall(self, conn: Conn, ln: LineRequest) -> dict[str, Any]:
        cur = await conn.execute(
            "SELECT coalesce(sum(greatest(on_hand - locked - safety_stock, 0)), 0)"
            " FROM baseline_stock WHERE sku = %s AND (%s::text IS NULL OR location = %s::text)",
            (ln.sku, ln.location, ln.location),
        )
        row = await cur.fetchone()
        return {"sku": ln.sku, "requested": ln.qty, "available": int(row[0]) if row else 0}

    async def _stored(self, order_id: str) -> tuple[Reservation, str]:
        """The reservation as stored (as replayed by a retry) and its fingerprint."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, expires_at, lines, fingerprint FROM baseline_reservations"
                " WHERE order_id = %s",
                (order_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no reservation {order_id}")
        status, exp, raw, fp = row
        if status == "active" and self.now() >= exp:
            status = "expired"
        return Reservation(order_id, status, exp, self._lines(raw), True), fp

    async def get_reservation(self, order_id: str) -> Reservation:
        v.ident(order_id, "order_id")
        stored, _ = await self._stored(order_id)
        return Reservation(stored.order_id, stored.status, stored.expires_at, stored.lines)

    @staticmethod
    def _lines(raw: list[list[Any]]) -> list[ReservedLine]:
        return [ReservedLine(sku, int(qty), loc) for sku, loc, qty in raw]

    # ------------------------------------------------------------------ settling
    async def cancel(self, order_id: str) -> Reservation:
        """Release the locks; again → the same answer; after ship or expiry → InvalidState."""
        return await self._settle(order_id, "cancelled")

    async def ship(self, order_id: str) -> Reservation:
        """on_hand and locked drop by the reserved qty; after cancel/expiry → InvalidState."""
        return await self._settle(order_id, "shipped")

    async def expire_due(self, *, limit: int = 100) -> int:
        """Release active reservations past their TTL; returns how many this call expired."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT order_id FROM baseline_reservations"
                " WHERE status = 'active' AND expires_at <= %s ORDER BY expires_at LIMIT %s",
                (self.now(), limit),
            )
            due = [r[0] for r in await cur.fetchall()]
        expired = 0
        for order_id in due:
            try:
                expired += not (await self._transition(order_id, "expired")).replayed
            except InvalidState:
                continue  # shipped or cancelled meanwhile: nothing left to release
        return expired

    async def _settle(self, order_id: str, target: ReservationStatus) -> Reservation:
        v.ident(order_id, "order_id")
        result = await self._transition(order_id, target)
        if result.status == "expired":
            raise InvalidState(f"reservation {order_id} expired", status="expired")
        return result

    async def _transition(self, order_id: str, target: ReservationStatus) -> Reservation:
        """Move an active reservation to `target` (or to expired if its TTL has passed)."""
        now = self.now()

        async def work(conn: Conn) -> Reservation:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT status, expires_at, lines FROM baseline_reservations"
                    " WHERE order_id = %s FOR UPDATE",
                    (order_id,),
                )
                row = await cur.fetchone()
                if row is None:
                    raise NotFound(f"no reservation {order_id}")
                status, exp, raw = row
                lines = self._lines(raw)
                if status == target:
                    return Reservation(order_id, status, exp, lines, True)
                if status != "active":
                    raise InvalidState(f"reservation {order_id} is {status}", status=status)
                final: ReservationStatus = "expired" if now >= exp else target
                await self._apply(conn, order_id, final, lines)
                await conn.execute(
                    "UPDATE baseline_reservations SET status = %s WHERE order_id = %s",
                    (final, order_id),
                )
                return Reservation(order_id, final, exp, lines)

        return await self._retrying(work)

    @staticmethod
    async def _apply(
        conn: Conn, order_id: str, status: ReservationStatus, lines: list[ReservedLine]
    ) -> None:
        kind = {"cancelled": "cancel", "shipped": "ship", "expired": "expire"}[status]
        per_place: dict[tuple[str, str], int] = defaultdict(int)
        for ln in lines:
            per_place[(ln.sku, ln.location)] += ln.qty
        for (sku, loc), qty in sorted(per_place.items()):
            await conn.execute(
                _CHANGE,
                {
                    "sku": sku,
                    "loc": loc,
                    "d_on_hand": -qty if kind == "ship" else 0,
                    "d_locked": -qty,
                    "op": f"{kind}:{order_id}",
                    "type": kind,
                    "ref": order_id,
                },
            )
