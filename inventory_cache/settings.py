"""Configuration from `INVENTORY_*` environment variables, in one place."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Unset URLs mean the embedded default (fakeredis, SQLite)."""

    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")

    redis_url: str | None = None
    # Unset redis_url means a fakeredis inside the process: right for the demo and tests,
    # wrong for a deployment's commands (serve, worker, warmup...), which refuse it
    # unless this is set.
    allow_embedded_redis: bool = False
    redis_cluster: bool = False
    redis_prefix: str = Field(default="inv", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    # Fixed for the life of a deployment: changing it needs a warmup into an empty Redis.
    slot_groups: int = Field(default=256, ge=1, le=16384)
    database_url: str | None = None
    location_priority: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_reads: bool = False
    # Where `demo` listens when --port is not given (docker compose maps the API there too).
    port: int = Field(default=8000, ge=1, le=65535)

    reservation_ttl_seconds: int = Field(default=900, ge=1, le=30 * 86400)
    # How long the idempotency records of movements (inbound, adjustments, returns, POS)
    # stay in Redis so that retries replay their first answer.
    idempotency_retention_seconds: int = Field(default=7 * 86400, ge=60)
    # How long finished orders (shipped, cancelled, expired) and finished transfers stay in
    # Redis; after it they are answered from PostgreSQL, unchanged, so Redis holds live
    # state and one window of history, not every order ever taken.
    finished_retention_seconds: int = Field(default=86_400, ge=60)
    # A reservation attempt that left its index half-done this long ago may be taken over
    # by a retry (the first attempt is presumed dead).
    attempt_lease_seconds: float = Field(default=10.0, gt=0)
    # Upper bound on concurrent pipelines the engine sends; more calls wait and coalesce.
    max_inflight_pipelines: int = Field(default=8, ge=1, le=64)
    # A pipeline leaves as soon as this many calls wait and a slot is free (see batcher.py).
    pipeline_flush_at: int = Field(default=8, ge=1, le=512)

    # Scheduler (issue 5). `report` only records reconciliation diffs; `correct` also
    # adjusts our on_hand (reason `reconcile`) to the WMS's.
    reconcile_mode: Literal["report", "correct"] = "report"
    reconcile_cron: str = "0 3 * * *"  # crontab: minute hour day month day-of-week
    wms_url: str | None = None  # HTTP JSON snapshot; else wms_csv_path
    wms_csv_path: str | None = None
    # Only these hosts and ports receive webhooks, so a client cannot make us call internal
    # addresses: `host[:port]` or `.domain[:port]` (https, port 443 by default), or
    # `http://host[:port]` to allow plain http there (port 80 by default).
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: str | None = None  # HMAC-SHA256 key of X-Inventory-Signature
    alert_webhook_url: str | None = None
    notify_webhook_url: str | None = None  # back in stock for subscriber_id subscriptions
    lease_seconds: float = Field(default=15.0, gt=0)
    expiry_sweep_seconds: float = Field(default=1.0, gt=0)
    alert_interval_seconds: float = Field(default=10.0, gt=0)
    replenishment_window_days: int = Field(default=28, ge=1, le=365)
    replenishment_cover_days: int = Field(default=14, ge=0, le=365)
    # Demand forecasts (issue 22): the nightly run's slot (UTC crontab) and how many days
    # of sales history each series is fitted on.
    forecast_cron: str = "30 2 * * *"
    forecast_history_days: int = Field(default=364, ge=28, le=1100)

    # HTTP API (issue 4). Product pages may see availability this stale (0: no near-cache);
    # checkout never reads from it.
    near_cache_ms: int = Field(default=250, ge=0, le=10_000)
    # Single Redis: entries live until Redis reports a change (CLIENT TRACKING), within
    # the same bound; off, or on Redis Cluster, the time bound alone applies.
    near_cache_tracking: bool = True
    # FastAPI's own OpenTelemetry spans and metrics (they need opentelemetry-sdk and a
    # provider). Off, FastAPI does not ask for a provider on every request.
    opentelemetry: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)  # larger bodies get 413
    # `serve`'s connection limits (api/server.py): a request's headers larger than this get
    # 431 `header_too_large`; a connection is closed when a request's headers are not
    # complete this long after they began (or after connecting), or when its body
    # receives nothing for this long.
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    # A verified API key is trusted this long without asking the key mirror in Redis
    # again, so a revocation takes effect within it.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # How often each API process measures readiness (Redis, PostgreSQL) and the worker's
    # lag in the background; `/readyz` and `/metrics` answer from the last measurement.
    status_refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    idempotency_key_ttl_seconds: int = Field(default=86_400, ge=60)  # stored answers
    # Requests per second per API key, shared by every API process (0: no limit, and no
    # Redis call for it). Up to `rate_limit_burst` requests may come at once; 0 there
    # means twice the rate, at least 1. Over the limit: 429 `rate_limited`.
    rate_limit_per_second: float = Field(default=0.0, ge=0, le=1_000_000)
    rate_limit_burst: int = Field(default=0, ge=0, le=1_000_000)
    # Lines of multi-line reservations one API key may have in flight in one API process
    # (0: no limit; one-line orders are not counted);
    # beyond it, 429 `rate_limited` with Retry-After (see api/inflight.py).
    max_lines_in_flight_per_key: int = Field(default=200, ge=0, le=1_000_000)
    # Lines of multi-line reservations one API process places at once, all keys together
    # (0: no limit); further orders wait their turn (see api/inflight.py).
    max_lines_in_flight: int = Field(default=100, ge=0, le=1_000_000)
    # An order of more lines is reserved slot group by slot group (a small script each,
    # the path an order spanning groups takes on a cluster) rather than in one script:
    # Redis runs one script at a time, and one that checks and locks 100 lines holds
    # everyone else's calls for about 4 ms.
    one_script_max_lines: int = Field(default=20, ge=1, le=1_000)
    # Live feed (`GET /v1/events`) streams open at once in one API process, and per API
    # key; beyond either, 429 `rate_limited`.
    feed_max_clients: int = Field(default=500, ge=1, le=100_000)
    feed_max_clients_per_key: int = Field(default=20, ge=1, le=100_000)
    # Stream entries a second that the resuming readers of one API process read between
    # them (0: no bound): what catching up may take of the event loop from everyone else.
    feed_catchup_per_second: int = Field(default=5000, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _default_burst(self) -> Settings:
        if self.rate_limit_burst == 0:
            self.rate_limit_burst = max(1, math.ceil(2 * self.rate_limit_per_second))
        return self

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip().lower() for p in v.split(",") if p.strip()]
        return v

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _parse_hosts(cls, v: list[str]) -> list[str]:
        from inventory_cache.webhooks import AllowedOrigin

        for entry in v:
            AllowedOrigin.parse(entry)  # a bad entry stops the service at start
        return v

    @field_validator("location_priority", mode="before")
    @classmethod
    def _split_locations(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, v: str | None) -> str | None:
        if v and v.startswith("postgresql://"):
            return "postgresql+psycopg://" + v.removeprefix("postgresql://")
        if v and v.startswith("postgres://"):
            return "postgresql+psycopg://" + v.removeprefix("postgres://")
        return v


@lru_cache
def get_settings() -> Settings:
    return Settings()
