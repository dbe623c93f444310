"""The body of every error answer (`application/problem+json`, `problems.py`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """An error (RFC 9457). Some codes add members: `lines`, `errors`, `field`, `status`..."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:inventory-cache:problem:not_found"])
    title: str
    status: int
    detail: str
    code: str = Field(examples=["not_found"])
