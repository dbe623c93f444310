"""JSON answers encoded by orjson, straight to bytes: no pydantic pass on the way out.

Routes still declare `response_model` for the OpenAPI document; returning a `Response`
skips FastAPI's own serialisation, which costs more than the Redis call on a hot read.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

REPLAYED = {"Idempotent-Replayed": "true"}


def json_response(data: Any, status_code: int = 200, *, replayed: bool = False) -> Response:
    """`replayed` marks an answer that repeats the first one (a retry of the same id)."""
    return Response(
        orjson.dumps(data),
        status_code=status_code,
        media_type="application/json",
        headers=REPLAYED if replayed else None,
    )


def json_bytes(body: bytes) -> Response:
    return Response(body, media_type="application/json")
