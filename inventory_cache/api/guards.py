"""Refuse oversized and non-JSON bodies before any route reads them (413, 415).

A pure ASGI middleware: it only looks at headers, except for a chunked body (no
Content-Length), which it reads up to the limit before handing it on. A request without
a body (`POST .../cancel`) may carry any or no content type.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inventory_cache.api.problems import problem_body

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
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                content_type = value
        too_large = f"the body exceeds {self.limit} bytes"
        if length is not None and length > self.limit:
            await send_problem(send, 413, "payload_too_large", "Payload too large", too_large)
            return
        if length is None:  # chunked: read it, at most the limit
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
                    await send_problem(
                        send, 413, "payload_too_large", "Payload too large", too_large
                    )
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            length = size
            receive = replay_body(b"".join(chunks), receive)
        if length > 0 and not is_json(content_type):
            detail = "send the body as application/json"
            await send_problem(
                send, 415, "unsupported_media_type", "Unsupported media type", detail
            )
            return
        await self.app(scope, receive, send)


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
