"""Refuse oversized, compressed, non-JSON and malformed bodies before any route reads them.

A pure ASGI middleware. It reads a body (at most the limit: 413 `payload_too_large`
beyond) and hands it on only if it is JSON in UTF-8: a `Content-Encoding` other than
`identity` is 415, like a content type that is not JSON; a byte order mark, UTF-16,
bytes that are not UTF-8, an escaped lone surrogate (`"\\ud800"`) or broken syntax is
422 `validation_error` on field `body`. So every route sees the same rule (before, a
route parsing with the standard library accepted a BOM or UTF-16 that another refused,
and a lone surrogate reached Redis, which cannot encode it: a 500 after earlier events of
the batch had been applied). A caller without a valid key gets 401 rather than learn
about its body. A request without a body (`POST .../cancel`) may carry any or no
content type.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inventory_cache.api.problems import UNAVAILABLE, problem, problem_body, problem_from
from inventory_cache.errors import InventoryError

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, object] | None = None,
) -> None:
    body = problem_body(status, code, title, detail, extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        length: int | None = None
        content_type = encoding = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value.strip().lower()
        too_large = f"the body exceeds {self.limit} bytes"
        if length is not None and length > self.limit:
            await send_problem(send, 413, "payload_too_large", "Payload too large", too_large)
            return
        if length == 0:
            await self.app(scope, receive, send)
            return
        if encoding not in (b"", b"identity"):
            detail = "send the body uncompressed (no Content-Encoding)"
            await send_problem(
                send, 415, "unsupported_media_type", "Unsupported media type", detail
            )
            return
        if length is not None and not is_json(content_type):
            await self._not_json(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_problem(send, 413, "payload_too_large", "Payload too large", too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and not is_json(content_type):
            await self._not_json(send)
            return
        if body:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                await self._malformed(scope, receive, send, str(exc))
                return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _not_json(send: Send) -> None:
        detail = "send the body as application/json"
        await send_problem(send, 415, "unsupported_media_type", "Unsupported media type", detail)

    async def _malformed(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        """422 for a body that is not UTF-8 JSON, once the caller's key is known good."""
        from inventory_cache.api.deps import authenticate  # deps → idempotency → guards

        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        try:
            await authenticate(
                scope["app"].state.services,
                None if authorization is None else authorization.decode("latin-1"),
            )
        except InventoryError as exc:
            await problem_from(exc)(scope, receive, send)
            return
        except UNAVAILABLE:
            detail = "a backing store is unreachable: retry shortly"
            await problem(503, "not_ready", "Service not ready", detail)(scope, receive, send)
            return
        detail = f"body: send JSON in UTF-8 without a byte order mark ({reason})"
        errors = [{"field": "body", "message": detail, "type": "json_invalid"}]
        await send_problem(
            send,
            422,
            "validation_error",
            "Invalid request",
            detail,
            {"field": "body", "errors": errors},
        )


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
