"""Liveness and readiness (`/healthz`, `/readyz`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Status(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Readiness(BaseModel):
    """`ready`, or `degraded` (PostgreSQL away, Redis serving) with what is missing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready"},
                {
                    "status": "degraded",
                    "redis": True,
                    "postgres": False,
                    "detail": "PostgreSQL unreachable: checkout and stock reads go on; "
                    "the ledger's routes answer 503 until it is back",
                },
            ]
        }
    )

    status: Literal["ready", "degraded"]
    redis: bool | None = None
    postgres: bool | None = None
    detail: str | None = None
