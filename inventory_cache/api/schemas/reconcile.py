"""Reconciliation runs with the WMS (`/v1/reconcile`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from inventory_cache.api.schemas.common import StrictBody


class ReconcileIn(StrictBody):
    model_config = ConfigDict(json_schema_extra={"examples": [{"mode": "report"}]})

    mode: Literal["report", "correct"] | None = None  # default INVENTORY_RECONCILE_MODE


class DiffOut(BaseModel):
    sku: str
    location: str
    ours: int
    wms: int
    diff: int
    kind: Literal["oversell_risk", "undersell"]


class RunOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "r20261128T015027-555aa5",
                    "status": "done",
                    "mode": "report",
                    "source": "csv:.demo/wms.csv",
                    "started_at": "2026-11-28T01:50:27.000Z",
                    "finished_at": "2026-11-28T01:50:27.725Z",
                    "summary": {
                        "snapshot_at": 1795830581133,
                        "checked": 7,
                        "diffs": 1,
                        "oversell_risk": 1,
                        "undersell": 0,
                        "corrected": 0,
                        "failures": [],
                    },
                    "diffs": [
                        {
                            "sku": "charger-c",
                            "location": "south",
                            "ours": 25,
                            "wms": 24,
                            "diff": 1,
                            "kind": "oversell_risk",
                        }
                    ],
                }
            ]
        }
    )

    run_id: str
    status: Literal["running", "done", "failed"]
    mode: Literal["report", "correct"]
    source: str
    started_at: str
    finished_at: str | None = None
    summary: dict[str, Any] | None = None
    diffs: list[DiffOut]


class RunSummaryOut(BaseModel):
    run_id: str
    status: Literal["running", "done", "failed"]
    mode: Literal["report", "correct"]
    source: str
    started_at: str
    finished_at: str | None = None
    summary: dict[str, Any] | None = None


class RunsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "run_id": "r20261128T030000-1a2b3c",
                            "status": "done",
                            "mode": "report",
                            "source": "csv:/exports/wms.csv",
                            "started_at": "2026-11-28T03:00:00.120Z",
                            "finished_at": "2026-11-28T03:00:01.480Z",
                            "summary": {"checked": 600, "diffs": 2, "corrected": 0},
                        }
                    ]
                }
            ]
        }
    )

    items: list[RunSummaryOut]
