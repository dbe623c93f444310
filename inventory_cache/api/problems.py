"""Every error the API answers is `application/problem+json` (RFC 9457) with a `code`.

The engine's typed errors carry their own code, status and title (`errors.py`); the
errors only the HTTP layer can meet (a missing key, a body too large, an unknown route...)
are added here as the same kind of typed error, so one renderer, `problem_from`, makes
every problem answer: the exception handlers' and the ASGI layer's (body guard,
`Idempotency-Key`, 503 for an unreachable store) alike. Only Starlette's own errors (404,
405: a status, no typed error) and the 500 are rendered here from their status, and the
connection-level 431 (`server.py`, no ASGI there) writes `problem_body` itself.

The body is `{"type", "title", "status", "detail", "code", ...extra}`; `type` is a URN
naming the code, so clients can switch on either. The list of codes is closed and has
none for a 405, so a method the path does not serve answers status 405 (with its `Allow`
header) and code `not_found`, the nearest: that operation does not exist. An unexpected
failure answers 500 `internal_error` without details.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response

from inventory_cache.api.schemas.problem import Problem
from inventory_cache.errors import (
    IdempotencyMismatch,
    InvalidState,
    InventoryError,
    NotReady,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"
# A backing store that cannot be reached: 503 `not_ready`, never a 500.
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
POSTGRES_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
UNAVAILABLE = REDIS_UNAVAILABLE + POSTGRES_UNAVAILABLE
POSTGRES_AWAY = (
    "PostgreSQL unreachable: checkout and stock reads go on; "
    "the ledger's routes answer 503 until it is back"
)
log = logging.getLogger(__name__)


class Unauthorized(InventoryError):
    code, status, title = "unauthorized", 401, "Unauthorized"


class Forbidden(InventoryError):
    code, status, title = "forbidden", 403, "Forbidden"


class RateLimited(InventoryError):
    """The API key sent more than its rate allows; retry after `retry_after_s` seconds."""

    code, status, title = "rate_limited", 429, "Too many requests"

    def __init__(
        self, retry_after_s: int, reason: str = "rate limit of this API key reached"
    ) -> None:
        super().__init__(f"{reason}: retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class PayloadTooLarge(InventoryError):
    code, status, title = "payload_too_large", 413, "Payload too large"


class UnsupportedMediaType(InventoryError):
    code, status, title = "unsupported_media_type", 415, "Unsupported media type"


class Unavailable(NotReady):
    """A backing store could not be answered or reached: retry shortly."""

    title = "Service not ready"


class IdempotencyKeyReused(IdempotencyMismatch):
    title = "Idempotency key reused"


class RequestInProgress(InvalidState):
    title = "Request in progress"


# Codes of the errors Starlette raises itself (routing, body parsing).
_CODE_OF_STATUS = {
    400: ("validation_error", "Invalid request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("not_found", "Method not allowed"),  # the closed list of codes has none for a 405
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_error", "Invalid request"),
    429: ("rate_limited", "Too many requests"),
    503: ("not_ready", "Service not ready"),
}


def problem_body(
    status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None
) -> bytes:
    body: dict[str, Any] = {
        "type": f"urn:inventory-cache:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return orjson.dumps(body)


def _problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        problem_body(status, code, title, detail, extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_from(exc: InventoryError) -> Response:
    status = exc.status if 400 <= exc.status < 600 else 500
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    if status >= 500 and status != 503:
        log.error("internal error: %s", exc.detail)
        return _internal_error()
    return _problem(status, exc.code, exc.title, exc.detail, exc.extra, headers)


def _internal_error() -> Response:
    return _problem(500, "internal_error", "Internal error", "an internal error occurred")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # An optional field (`Ident | None`) is a union: pydantic names the member that refused
    # the value after the field (`customer_id.constrained-str`); the field is the field.
    while parts and (parts[-1] == "none" or parts[-1].startswith("constrained-")):
        parts.pop()
    return ".".join(parts)


async def _on_inventory_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InventoryError)
    return problem_from(exc)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": "body" if e["type"] == "json_invalid" else _field(e.get("loc", ())),
            "message": str(e.get("msg", "")),
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return problem_from(ValidationError(detail, field=first["field"], errors=errors))


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, title = _CODE_OF_STATUS.get(exc.status_code, ("http_error", "HTTP error"))
    status = 422 if exc.status_code == 400 else exc.status_code
    return _problem(status, code, title, str(exc.detail), headers=exc.headers)


async def _on_unavailable(_: Request, exc: Exception) -> Response:
    """Redis or PostgreSQL unreachable: the client may retry, as after a failover. Only
    the routes that read PostgreSQL (movements, policies, alerts, subscriptions,
    replenishment, reconcile) can meet its outage; the detail names it."""
    log.warning("backing store unavailable: %r", exc)
    return problem_from(Unavailable(unavailable_detail(exc)))


def unavailable_detail(exc: BaseException) -> str:
    """The `not_ready` detail that names the store a request could not reach."""
    if isinstance(exc, POSTGRES_UNAVAILABLE):
        return "PostgreSQL is unreachable and this request needs it: retry shortly"
    return "Redis is unreachable: retry shortly"


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    """Starlette still logs the exception; the client learns nothing internal."""
    return _internal_error()


def install(app: FastAPI) -> None:
    app.add_exception_handler(InventoryError, _on_inventory_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, _on_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)


_EXAMPLES: dict[int, tuple[str, str, str, dict[str, Any]]] = {
    401: ("unauthorized", "Unauthorized", "missing or invalid API key", {}),
    403: ("forbidden", "Forbidden", "this API key lacks the scope 'warehouse'", {}),
    404: ("not_found", "Not found", "no reservation o-1", {}),
    409: (
        "insufficient_stock",
        "Insufficient stock",
        "not enough stock for: phone-a (requested 2, available 1)",
        {"lines": [{"sku": "phone-a", "requested": 2, "available": 1}]},
    ),
    413: ("payload_too_large", "Payload too large", "the body exceeds 1048576 bytes", {}),
    415: ("unsupported_media_type", "Unsupported media type", "send application/json", {}),
    422: (
        "validation_error",
        "Invalid request",
        "qty: Input should be a valid integer",
        {
            "field": "qty",
            "errors": [
                {"field": "qty", "message": "Input should be a valid integer", "type": "int_type"}
            ],
        },
    ),
    429: (
        "rate_limited",
        "Too many requests",
        "rate limit of this API key reached: retry in 1 s",
        {},
    ),
    503: ("not_ready", "Stock cache not ready", "stock cache not loaded: run warmup", {}),
}

DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one (`unauthorized`).",
    403: "The API key lacks this route's scope (`forbidden`).",
    404: "Unknown resource (`not_found`).",
    409: "Conflict: `insufficient_stock`, `limit_exceeded`, `invalid_state` or "
    "`idempotency_mismatch`.",
    413: "Body larger than the configured limit (`payload_too_large`).",
    415: "Body is not JSON (`unsupported_media_type`).",
    422: "Invalid input (`validation_error`): `field` names the first offending field.",
    429: "This API key exceeded INVENTORY_RATE_LIMIT_PER_SECOND (`rate_limited`): "
    "retry after `Retry-After` seconds.",
    503: "Redis not loaded or unreachable (`not_ready`): retry after warmup.",
}


def example(status: int) -> dict[str, Any]:
    code, title, detail, extra = _EXAMPLES[status]
    return orjson.loads(problem_body(status, code, title, detail, extra))  # type: ignore[no-any-return]


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its error statuses, each a Problem with an example.

    `descriptions` overrides a status's text, keyed `s409="..."`.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": Problem,
            "description": descriptions.get(f"s{status}", DESCRIPTIONS[status]),
            "content": {PROBLEM_JSON: {"example": example(status)}},
        }
    return out
