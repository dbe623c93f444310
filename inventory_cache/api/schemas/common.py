"""What every body shares: identifiers, quantities, times, and strict request bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from inventory_cache import validation as v

IDENT_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

# No example of its own: an identifier is a SKU, a location or a ref, and each model's
# example shows which (with the demo's catalogue, so "Try it out" works on the demo).
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
Qty = Annotated[int, Field(strict=True, ge=1, le=v.MAX_QTY, examples=[2])]
Count = Annotated[int, Field(strict=True, ge=0, le=v.MAX_ON_HAND)]


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC, `2026-11-22T10:15:00.000Z`."""
    return iso_datetime(datetime.fromtimestamp(ms / 1000, UTC))


def iso_datetime(dt: datetime) -> str:
    """ISO-8601 UTC with a `Z`; a naive time (SQLite, the demo) is taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nulls(cls, value: Any, info: ValidationInfo) -> Any:
        """An optional field is omitted, never `null`: the schema admits no null anywhere."""
        if value is None:
            raise ValueError(f"{info.field_name} must not be null (omit an optional field)")
        return value
