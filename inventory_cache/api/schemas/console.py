"""Who the calling key is and the health summary (`/v1/me`, `/v1/status`, the console's
routes in `console/status.py`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "store-12 tills", "scopes": ["read", "warehouse"], "admin": False}
            ]
        }
    )

    name: str
    scopes: list[str] = Field(description="what the key may do; `admin` implies every scope")
    admin: bool


class StatusOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "redis": "ready",
                    "postgres": "up",
                    "worker_lag_events": 0,
                    "expiry_sweep_delay_seconds": 0.0,
                    "events_total": 1843,
                    "now_ms": 1800000000000,
                }
            ]
        }
    )

    redis: str = Field(description="ready, not_loaded (run warmup) or down")
    postgres: str = Field(description="up or down")
    worker_lag_events: int | None = Field(
        description="events in Redis not yet written to PostgreSQL (null: Redis down)"
    )
    expiry_sweep_delay_seconds: float | None = Field(
        description="how long the oldest reservation past its TTL has waited for the sweep"
    )
    events_total: int | None = Field(description="stock changes ever appended to the streams")
    now_ms: int
