"""Refuse oversized, compressed, non-JSON and malformed bodies before any route reads them.

Part of the one ASGI layer (`gateway.py`). It reads a body (at most the limit: 413
`payload_too_large` beyond) and hands it on only if it is JSON in UTF-8: a
`Content-Encoding` other than `identity` is 415, like a content type that is not JSON; a
byte order mark, UTF-16, bytes that are not UTF-8, an escaped lone surrogate
(`"\\ud800"`) or broken syntax is 422 `validation_error` on field `body`. So every
route sees the same rule (before, a route parsing with the standard library accepted a
BOM or UTF-16 that another refused, and a lone surrogate reached Redis, which cannot
encode it: a 500 after earlier events of the batch had been applied). A caller without a
valid key gets 401 rather than learn about its body. A request without a body
(`POST .../cancel`) may carry any or no content type.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from inventory_cache.api.bearer import authorization_of
from inventory_cache.api.problems import (
    UNAVAILABLE,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
    problem_from,
)
from inventory_cache.errors import InventoryError, ValidationError

IDEMPOTENCY_HEADER = b"idempotency-key"


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


@dataclass(frozen=True, slots=True)
class GuardedBody:
    """A body the guard let through. `body` is None when it was declared empty
    (`Content-Length: 0`) and so not read; `idempotency_key` is the request's header, read
    in the same pass over the headers."""

    body: bytes | None
    idempotency_key: bytes | None

    def receive(self, receive: Receive) -> Receive:
        """What the route reads its body from."""
        return receive if self.body is None else replay_body(self.body, receive)


async def guard_body(scope: Scope, receive: Receive, send: Send, limit: int) -> GuardedBody | None:
    """The body of a POST, PUT or PATCH, read (at most `limit` bytes) and checked; None
    when it was refused (the answer is sent) or the client went away."""
    length: int | None = None
    content_type = encoding = b""
    idem: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"content-type":
            content_type = value
        elif name == b"content-encoding":
            encoding = value.strip().lower()
        elif name == IDEMPOTENCY_HEADER and idem is None:
            idem = value
    if length is not None and length > limit:
        await _too_large(limit)(scope, receive, send)
        return None
    if length == 0:
        return GuardedBody(None, idem)
    if encoding not in (b"", b"identity"):
        detail = "send the body uncompressed (no Content-Encoding)"
        await problem_from(UnsupportedMediaType(detail))(scope, receive, send)
        return None
    if length is not None and not is_json(content_type):
        await _not_json()(scope, receive, send)
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _too_large(limit)(scope, receive, send)
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if body and not is_json(content_type):
        await _not_json()(scope, receive, send)
        return None
    if body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            refusal = await _malformed(scope, str(exc))
            await refusal(scope, receive, send)
            return None
    return GuardedBody(body, idem)


def _too_large(limit: int) -> Response:
    detail = f"the body exceeds {limit} bytes"
    return problem_from(PayloadTooLarge(detail))


def _not_json() -> Response:
    detail = "send the body as application/json"
    return problem_from(UnsupportedMediaType(detail))


async def _malformed(scope: Scope, reason: str) -> Response:
    """422 for a body that is not UTF-8 JSON, once the caller's key is known good."""
    from inventory_cache.api.deps import authenticate  # deps → idempotency → guards

    try:
        await authenticate(scope["app"].state.services, authorization_of(scope), scope)
    except InventoryError as exc:
        return problem_from(exc)
    except UNAVAILABLE:
        detail = "a backing store is unreachable: retry shortly"
        return problem_from(Unavailable(detail))
    detail = f"body: send JSON in UTF-8 without a byte order mark ({reason})"
    errors = [{"field": "body", "message": detail, "type": "json_invalid"}]
    return problem_from(ValidationError(detail, field="body", errors=errors))


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields an already read body once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
