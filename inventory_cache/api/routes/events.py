"""`GET /v1/events`: live stock changes as Server-Sent Events (`read`).

Each change is one SSE message: `id:` is its feed position (see `feed.py`) and `data:` a
JSON object: `type` (reserve, pos_sale, inbound...), `op`, `ref`, `reason`, `ts` (ms),
`rows` (one per (sku, location) changed: deltas and the levels after), and the fields of
its kind (`order_id`, `lines`, `status`, `expires_at`; `transfer_id`, `from_location`...).

- `?sku=A&sku=B&location=north` keeps only those rows (a change without one is skipped).
- Reconnecting with `Last-Event-ID` (browsers send it by themselves; or the
  `last_event_id` query parameter) resumes right after that message: nothing is lost
  while disconnected and nothing comes twice. Streams keep what PostgreSQL has not
  written and at least the last hour; if what a client missed is older and was trimmed,
  it first gets `event: reset` (`{"reason": "history_trimmed"}`): reload the state.
- A comment line with an `id:` is sent at once on connecting and after every
  `KEEPALIVE_SECONDS` of silence: proxies keep the connection open, and the client's
  resume point moves past changes its filter skipped.
- A client that stops reading is disconnected once one write has waited
  `SEND_TIMEOUT_SECONDS`; until then it only costs its own bounded queue (`feed.py`).
  (Both in `livefeed.py`, with the caps below.)
- A resume from far back (even the first entry of streams holding 100k entries) is read
  in pages shared through one gate per process, so it costs bounded memory, Redis
  connections and event-loop time per client whatever its position (`feed.read_range`).
- At most `INVENTORY_FEED_MAX_CLIENTS` streams per API process and
  `INVENTORY_FEED_MAX_CLIENTS_PER_KEY` per API key; beyond, 429 `rate_limited` with
  `Retry-After`.
- The stream's API key is checked again while it runs: once revoked (seen within
  `INVENTORY_API_KEY_CACHE_SECONDS`), the stream sends `event: revoked` and ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from inventory_cache import validation as v
from inventory_cache.api.bearer import bearer_token
from inventory_cache.api.deps import FeedDep, ReadKey, get_services
from inventory_cache.api.livefeed import Feed
from inventory_cache.api.problems import problem_responses
from inventory_cache.errors import ValidationError
from inventory_cache.feed import (
    FeedEvent,
    Filter,
    Gap,
    KeepAlive,
    Position,
    Tick,
    follow,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
MAX_FILTER_VALUES = 200

# One reservation on the demo, as the stream shows it.
SSE_EXAMPLE = (
    "id: 1795834313832-36-0\n"
    'data: {"id":"1795834313832-36-0","type":"reserve","op":"reserve:o-1:3bfa54b83b7c0",'
    '"ref":"o-1","reason":"reserve","ts":1795834313777,"rows":[{"sku":"phone-a",'
    '"location":"north","delta_on_hand":0,"delta_locked":1,"on_hand":10,"locked":1,'
    '"safety_stock":0,"available":9}],"order_id":"o-1","status":"active",'
    '"expires_at":1795835213777,"lines":[{"sku":"phone-a","location":"north","qty":1}]}\n\n'
)


class EventStream(StreamingResponse):
    """`text/event-stream` whose every write must complete within `send_timeout`.

    A write waits only when the client's socket buffers are full, i.e. it stopped
    reading; after `send_timeout` the stream ends and the connection is closed, which
    also unsubscribes the reader from the hub.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        send_timeout: float,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.send_timeout = send_timeout
        self.stalled = False
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def stream_response(self, send: Send) -> None:
        iterator = self.body_iterator
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in iterator:
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                try:
                    await asyncio.wait_for(send(message), self.send_timeout)
                except TimeoutError:
                    self.stalled = True
                    log.warning("events: closing a client that stopped reading")
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def render(item: FeedEvent | KeepAlive | Gap, flt: Filter) -> bytes:
    if isinstance(item, KeepAlive):
        return b": keep-alive\nid: " + item.position.encode().encode() + b"\n\n"
    if isinstance(item, Gap):
        reset = {
            "reason": "history_trimmed",
            "detail": "changes after your Last-Event-ID are no longer kept: reload the "
            "stock you show from GET /v1/stock/{sku}; the feed goes on from here",
            "resync": "/v1/stock/{sku}",
            "groups": list(item.groups),
        }
        return b"event: reset\ndata: " + orjson.dumps(reset) + b"\n\n"
    body = item.view(flt)
    return b"id: " + item.position.encode().encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


REVOKED = (
    b"event: revoked\ndata: "
    + orjson.dumps({"reason": "key_revoked", "detail": "this API key was revoked"})
    + b"\n\n"
)


async def _messages(
    feed: Feed,
    flt: Filter,
    after: Position | None,
    key_valid: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[bytes]:
    """The stream's bytes; with `key_valid`, asked every `key_check_seconds` (between
    messages, or on an idle tick), the stream ends with `event: revoked` once it says no."""
    loop = asyncio.get_running_loop()
    check_at = loop.time() + feed.key_check_seconds
    first = True
    tick = feed.key_check_seconds if key_valid is not None else None
    async for item in follow(
        feed.hub, flt, after, keepalive_seconds=feed.keepalive_seconds, tick_seconds=tick
    ):
        if key_valid is not None and loop.time() >= check_at:
            if not await key_valid():
                yield REVOKED
                return
            check_at = loop.time() + feed.key_check_seconds
        if isinstance(item, Tick):
            continue
        if first:
            yield f"retry: {RETRY_MS}\n".encode() + render(item, flt)
            first = False
        else:
            yield render(item, flt)


def _idents(values: list[str] | None, field: str) -> frozenset[str]:
    values = values or []
    if len(values) > MAX_FILTER_VALUES:
        raise ValidationError(f"at most {MAX_FILTER_VALUES} values of {field}", field=field)
    return frozenset(v.ident(x, field) for x in values)


@router.get(
    "/events",
    response_class=EventStream,
    status_code=200,
    responses={
        200: {
            "description": "An endless `text/event-stream` of stock changes",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}
            },
        },
        **problem_responses(
            401,
            403,
            422,
            429,
            s429="`rate_limited`: the process's or this API key's live feeds are all in "
            "use (`INVENTORY_FEED_MAX_CLIENTS`, `INVENTORY_FEED_MAX_CLIENTS_PER_KEY`).",
        ),
    },
    summary="Live stock changes (Server-Sent Events), resumable with Last-Event-ID",
)
async def events(
    request: Request,
    feed: FeedDep,
    principal: ReadKey,
    sku: Annotated[list[str] | None, Query(description="keep only these SKUs")] = None,
    location: Annotated[list[str] | None, Query(description="keep only these locations")] = None,
    last_event_id: Annotated[
        str | None, Query(description="resume after this id (as the header)")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Any:
    flt = Filter(_idents(sku, "sku"), _idents(location, "location"))
    resume = last_event_id_header or last_event_id
    after = Position.parse(resume) if resume else None
    auth = get_services(request).auth
    token = bearer_token(request.headers.get("authorization"))

    async def key_valid() -> bool:
        return token is not None and await auth.authenticate(token) is not None

    release = feed.admit(principal.key_id)
    return EventStream(
        _messages(feed, flt, after, key_valid), feed.send_timeout_seconds, on_close=release
    )
