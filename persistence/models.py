"""The durable side of the service: SQLAlchemy 2 models of every PostgreSQL table.

Redis holds the hot state; these tables hold the ledger and enough of the state to rebuild
Redis (`warmup`). Table and column names are a contract: other modules and users' reports
query them (see docs/contract.md). The same models run on SQLite for the embedded demo,
so they use only portable types (JSON becomes JSONB on PostgreSQL, BIGINT keys become
INTEGER on SQLite so that they auto-increment).

Times are timezone-aware. Redis events carry milliseconds since the epoch; the worker
converts them, and warmup converts back (PostgreSQL keeps microseconds, so nothing is lost).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic's "The Importance of Naming Constraints": stable names, so that later
# migrations can drop or alter constraints by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)  # identifiers: 1-64 characters of [A-Za-z0-9._:-]
BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite only auto-increments INTEGER
Json = JSON().with_variant(JSONB(), "postgresql")
Qty = BigInteger


def _ts(**kw: Any) -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), **kw)


def _created() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), server_default=text("CURRENT_TIMESTAMP"), nullable=False
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# ---------------------------------------------------------------------------- catalogue
class Location(Base):
    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), server_default="")
    kind: Mapped[str] = mapped_column(String(16), server_default="warehouse")  # or 'store'
    created_at: Mapped[datetime] = _created()


class Sku(Base):
    __tablename__ = "skus"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[datetime] = _created()


class Barcode(Base):
    __tablename__ = "barcodes"

    code: Mapped[str] = mapped_column(Id, primary_key=True)
    sku: Mapped[str] = mapped_column(Id, ForeignKey("skus.sku", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _created()


# ---------------------------------------------------------------------------- stock
class StockLevel(Base):
    """The last state of one (sku, location) the worker applied.

    `version` is the SKU's version (`v` of its Redis hash) after the change that produced
    this row: the worker only overwrites a row with a newer version, so events applied
    out of order (two workers, a redelivery) never move a level backwards.
    """

    __tablename__ = "stock_levels"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    location: Mapped[str] = mapped_column(Id, primary_key=True)
    on_hand: Mapped[int] = mapped_column(Qty, server_default="0")
    locked: Mapped[int] = mapped_column(Qty, server_default="0")
    safety_stock: Mapped[int] = mapped_column(Qty, server_default="0")
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _ts(server_default=text("CURRENT_TIMESTAMP"))


class Movement(Base):
    """The ledger: one row per change of one (sku, location), never updated.

    `(op_id, sku, location)` is unique, so a redelivered event adds nothing (docs/contract.md:
    the ledger deduplicates on the operation's id, not on the stream entry id).
    `(sku, location, version)` is unique too: a Redis that came back behind the ledger
    would hand out versions already taken by other operations, and the database refuses
    that second branch instead of recording it (`persistence.sink.VersionFork`).
    `created_at` is when the change happened in Redis; `recorded_at` when it reached here.
    """

    __tablename__ = "movements"
    __table_args__ = (
        UniqueConstraint("op_id", "sku", "location"),
        Index("ix_movements_sku_location_id", "sku", "location", text("id DESC")),
        Index("uq_movements_sku_location_version", "sku", "location", "version", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op_id: Mapped[str] = mapped_column(String(200))
    sku: Mapped[str] = mapped_column(Id)
    location: Mapped[str] = mapped_column(Id)
    type: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(Id)
    delta_on_hand: Mapped[int] = mapped_column(Qty)
    delta_locked: Mapped[int] = mapped_column(Qty)
    on_hand_after: Mapped[int] = mapped_column(Qty)
    locked_after: Mapped[int] = mapped_column(Qty)
    safety_stock_after: Mapped[int] = mapped_column(Qty)
    version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _ts()
    stream_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = _ts(server_default=text("CURRENT_TIMESTAMP"))
    # A component row of bundle lines (reserve, cancel, expire, ship, release of an
    # order): the bundle SKUs it moved units for, comma-separated; NULL for other rows.
    bundle: Mapped[str | None] = mapped_column(Text, nullable=True)


class LedgerMark(Base):
    """The newest stream entry of each slot group that a batch committed, written in the
    batch's own transaction: `marks` is JSON `{"<group>": [entry_ms, entry_seq, op_id]}`.

    One row per batch (insert only, so two committing connections never wait for each
    other here); `inventory_cache.behind` merges the rows into one now and then. Redis
    must still hold each group's newest entry with that op: if it does not, Redis has come
    back behind what PostgreSQL committed.
    """

    __tablename__ = "ledger_marks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    marks: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = _created()


# ---------------------------------------------------------------------------- orders
class Reservation(Base):
    """One order's reservation, summarised from its lines (status, expiry, token).

    `status` is `active`, `cancelled`, `expired`, `shipped`, or `released` when every
    attempt was compensated (the order never held stock; warmup skips it).
    `finished_xid` is the PostgreSQL transaction that first wrote a finished status: the
    API's archive reads the finished ids committed since its last read by it.
    """

    __tablename__ = "reservations"
    __table_args__ = (
        Index(
            "ix_reservations_finished_xid",
            "finished_xid",
            postgresql_where=text("finished_xid IS NOT NULL"),
            sqlite_where=text("finished_xid IS NOT NULL"),
        ),
    )

    order_id: Mapped[str] = mapped_column(Id, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = _ts()
    fingerprint: Mapped[str | None] = mapped_column(String(64))  # the whole order's (`ofp`)
    token: Mapped[str] = mapped_column(String(32))  # attempt token of the latest part
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()
    finished_xid: Mapped[int | None] = mapped_column(BigInteger)


class ReservationLine(Base):
    """A line of a reservation part (the lines of one order in one slot group).

    An attempt (`token`) that was compensated leaves its lines `released`; a retry adds
    lines under its own token. `position` is the line's place in its part, so warmup
    restores the part exactly and a replay answers the lines in their first order.
    """

    __tablename__ = "reservation_lines"
    __table_args__ = (Index("ix_reservation_lines_sku_location", "sku", "location"),)

    order_id: Mapped[str] = mapped_column(
        Id, ForeignKey("reservations.order_id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    location: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Qty)
    part_fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = _ts()
    # Unknown until the reserve event arrives (a settle event may be applied first).
    reserved_at: Mapped[datetime | None] = _ts(nullable=True)
    settled_at: Mapped[datetime | None] = _ts(nullable=True)
    # The part's bundle lines as `reserve-4.lua` keeps them (`bdl`): JSON
    # [[bundle, qty, location or '', [[component, qty per bundle], ...]], ...]; NULL if none.
    bundles: Mapped[str | None] = mapped_column(Text, nullable=True)


class BundleDefinition(Base):
    """A bundle (kit) as its latest change left it; `components` NULL once deleted (the
    row stays so that `version`, the Redis definition's own counter, keeps ordering
    changes applied out of order).

    `components` is `[[sku, qty], ...]`, sorted by SKU.
    """

    __tablename__ = "bundles"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    components: Mapped[list[Any] | None] = mapped_column(Json, nullable=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts()


class CustomerLimit(Base):
    """A SKU's per-customer limit as Redis last set it (`set_limit-3.lua`).

    `per_customer` 0 is a removed limit, kept so that its `version` (the Redis hash's `v`,
    +1 per change) still orders later changes and warmup continues the sequence;
    `window_seconds` 0 is the SKU's lifetime. `generation` is the version at which the
    limit was set where there was none: only counts of that generation apply.
    """

    __tablename__ = "customer_limits"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    per_customer: Mapped[int] = mapped_column(Qty)
    window_seconds: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts()


class CustomerCount(Base):
    """Units one reservation attempt counted against a SKU's per-customer limit.

    `held` while the order is active or once shipped; `returned` when it was released,
    cancelled or expired (the units went back to the customer). Warmup rebuilds each
    customer's count from the `held` rows of the limit's generation (within its window).
    """

    __tablename__ = "customer_counts"
    __table_args__ = (Index("ix_customer_counts_sku_customer_id", "sku", "customer_id"),)

    order_id: Mapped[str] = mapped_column(Id, primary_key=True)
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Qty)
    generation: Mapped[int] = mapped_column(BigInteger)
    counted_at: Mapped[datetime] = _ts()
    status: Mapped[str] = mapped_column(String(16))


class IncomingStock(Base):
    """An incoming record (a purchase order, a production run): `qty` units of `sku`
    expected at `location` on `expected_at`, `open` until `received` (`received_qty`
    booked on hand) or `cancelled`. `version` is the SKU's version in the event that
    wrote the row: the highest wins, so changes applied out of order never go back.
    """

    __tablename__ = "incoming_stock"
    __table_args__ = (Index("ix_incoming_stock_sku", "sku"),)

    ref: Mapped[str] = mapped_column(Id, primary_key=True)
    sku: Mapped[str] = mapped_column(Id)
    location: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Qty)
    expected_at: Mapped[datetime] = _ts()
    status: Mapped[str] = mapped_column(String(16))  # open | received | cancelled
    received_qty: Mapped[int] = mapped_column(Qty)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts()


class PreorderPolicy(Base):
    """The units of one (sku, location) reservations may take from its incoming stock
    (`p:<loc>` of the SKU's stock hash); 0 = none. The highest `version` (the SKU's, in
    the event's row) wins."""

    __tablename__ = "preorder_policies"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    location: Mapped[str] = mapped_column(Id, primary_key=True)
    preorder_limit: Mapped[int] = mapped_column(Qty)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _ts()


# The statuses of a pre-order line still in its SKU's book (its order is active).
PREORDER_OPEN = ("awaiting", "locked", "uncovered")


class Preorder(Base):
    """A pre-order line: `qty` units of a reservation part covered by incoming stock due
    at `expected_at`, numbered `seq` in its SKU's book (`Keys.preorders`).

    `status` moves up by rank only: `awaiting` (0); `locked` (converted into an ordinary
    lock when the stock was received) or `uncovered` (its incoming stock was cancelled or
    came short) (1); the part's final status `released`, `cancelled`, `expired` or
    `shipped` (2). `updated_at` is when the current status was set. `part_fingerprint`
    and `expires_at` are the part's (NULL until its reservation's events arrive): a part
    may hold pre-order lines only, so warmup and the archive rebuild it from here.
    """

    __tablename__ = "preorders"
    __table_args__ = (
        Index("ix_preorders_order_id", "order_id"),
        Index(
            "ix_preorders_open",
            "sku",
            postgresql_where=text("status IN ('awaiting', 'locked', 'uncovered')"),
            sqlite_where=text("status IN ('awaiting', 'locked', 'uncovered')"),
        ),
    )

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    order_id: Mapped[str] = mapped_column(Id)
    token: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Qty)
    expected_at: Mapped[datetime] = _ts()
    status: Mapped[str] = mapped_column(String(16))
    reserved_at: Mapped[datetime | None] = _ts(nullable=True)
    updated_at: Mapped[datetime] = _ts()
    part_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[datetime | None] = _ts(nullable=True)


class Transfer(Base):
    __tablename__ = "transfers"

    transfer_id: Mapped[str] = mapped_column(Id, primary_key=True)
    sku: Mapped[str] = mapped_column(Id)
    from_location: Mapped[str] = mapped_column(Id)
    to_location: Mapped[str] = mapped_column(Id)
    qty: Mapped[int] = mapped_column(Qty)
    status: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class IdempotencyRecord(Base):
    """A movement's first answer, so warmup can restore retry safety (`inv:{g}:op:...`).

    `key` is the event's `idem` (`Keys.op_suffix`: `kind:len(sku):sku:ref`); `sku` is kept
    apart because the Redis key's slot group comes from the SKU.
    """

    __tablename__ = "idempotency_records"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sku: Mapped[str] = mapped_column(Id)
    fingerprint: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = _ts()


class HttpIdempotency(Base):
    """The stored answer of an `Idempotency-Key`, for replays after it left Redis.

    Written only when answers are replayed longer (`INVENTORY_IDEMPOTENCY_KEY_TTL_SECONDS`)
    than Redis keeps them (`INVENTORY_FINISHED_RETENTION_SECONDS`); `key` is the Redis
    record's name after the prefix (`idem:<api key id>:<digest of the header>`).
    """

    __tablename__ = "http_idempotency"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(200))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = _ts()


# ---------------------------------------------------------------------------- policy
class Policy(Base):
    __tablename__ = "policies"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    location: Mapped[str] = mapped_column(Id, primary_key=True)
    safety_stock: Mapped[int] = mapped_column(Qty, server_default="0")
    reorder_point: Mapped[int] = mapped_column(Qty, server_default="0")
    reorder_qty: Mapped[int] = mapped_column(Qty, server_default="0")
    lead_time_days: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = _ts(server_default=text("CURRENT_TIMESTAMP"))
    # Forecast-driven replenishment: the probability of not running out during a lead
    # time, and the level an order brings the position up to (0: reorder point plus the
    # forecast over the cover days).
    service_level: Mapped[float] = mapped_column(Float, server_default="0.95")
    order_up_to: Mapped[int] = mapped_column(Qty, server_default="0")


class ApiKey(Base):
    """An API key, stored as the SHA-256 hex of the secret (never the secret itself)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(Id, primary_key=True)  # public key id
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(Text)  # comma-separated
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = _ts(nullable=True)
    last_used_at: Mapped[datetime | None] = _ts(nullable=True)


# ---------------------------------------------------------------------------- reconcile
class ReconcileRun(Base):
    __tablename__ = "reconcile_runs"

    run_id: Mapped[str] = mapped_column(Id, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = _ts(nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)


class ReconcileDiff(Base):
    __tablename__ = "reconcile_diffs"

    run_id: Mapped[str] = mapped_column(
        Id, ForeignKey("reconcile_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    location: Mapped[str] = mapped_column(Id, primary_key=True)
    ours: Mapped[int] = mapped_column(Qty)
    wms: Mapped[int] = mapped_column(Qty)
    diff: Mapped[int] = mapped_column(Qty)
    kind: Mapped[str] = mapped_column(String(16))  # 'oversell_risk' | 'undersell'


# ---------------------------------------------------------------------------- alerts
class Alert(Base):
    """A low-stock, oversold or uncovered-pre-orders condition; at most one active per
    (sku, location, kind)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_active",
            "sku",
            "location",
            "kind",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(Id)
    location: Mapped[str] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(16))  # 'low_stock' | 'oversold' | 'uncovered'
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    raised_at: Mapped[datetime] = _created()
    cleared_at: Mapped[datetime | None] = _ts(nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)


class Subscription(Base):
    """ "Notify me when back in stock": a webhook or a subscriber id, notified once.

    `public_id` is the id clients see (random: `id` counts up, so it would let one client
    walk through another's). `owner` is the API key id that made it (none: made before
    owners were recorded). `dedup_key` digests (owner, sku, target): one pending
    subscription per digest, so identical requests at once make one.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index(
            "uq_subscriptions_pending",
            "dedup_key",
            unique=True,
            postgresql_where=text("notified_at IS NULL"),
            sqlite_where=text("notified_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str | None] = mapped_column(Id, nullable=True)
    dedup_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sku: Mapped[str] = mapped_column(Id, index=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    subscriber_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = _created()
    notified_at: Mapped[datetime | None] = _ts(nullable=True)


# ---------------------------------------------------------------------------- forecasts
class ForecastRun(Base):
    """One run of the forecast job; `run_id` `nightly-<date>` for the scheduler's.

    The row is also the run's mutex: a run starts by inserting it or taking over a
    `failed` one (or a `running` one whose heartbeat stopped), in one statement.
    """

    __tablename__ = "forecast_runs"

    run_id: Mapped[str] = mapped_column(Id, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # running | ok | failed
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = _created()
    heartbeat_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = _ts(nullable=True)
    series: Mapped[int] = mapped_column(Integer, server_default="0")
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Forecast(Base):
    """The latest forecast of one (sku, location): daily demand from `start_date` on.

    `mae`, `rmse` (daily, units) and `mase` are the chosen model's errors over the
    rolling-origin backtest; `rmse` sizes safety stock.
    """

    __tablename__ = "forecasts"

    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    location: Mapped[str] = mapped_column(Id, primary_key=True)
    run_id: Mapped[str] = mapped_column(Id)
    start_date: Mapped[date] = mapped_column(Date)
    model: Mapped[str] = mapped_column(String(32))
    demand_class: Mapped[str] = mapped_column(String(16))
    daily: Mapped[list[float]] = mapped_column(Json)
    mean_daily: Mapped[float] = mapped_column(Float)
    mae: Mapped[float | None] = mapped_column(Float, nullable=True)
    rmse: Mapped[float | None] = mapped_column(Float, nullable=True)
    mase: Mapped[float | None] = mapped_column(Float, nullable=True)
    history_days: Mapped[int] = mapped_column(Integer)
    stockout_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
