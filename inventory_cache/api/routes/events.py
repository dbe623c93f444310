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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import StreamingResponse
from starlette.types import Send

from inventory_cache import validation as v
from inventory_cache.api.deps import ReadKey, get_services
from inventory_cache.api.problems import problem_responses
from inventory_cache.errors import ValidationError
from inventory_cache.feed import FeedEvent, FeedHub, Filter, Gap, KeepAlive, Position, follow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

KEEPALIVE_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0
RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
MAX_FILTER_VALUES = 200


@dataclass
class Feed:
    """The app's hub and the HTTP side's timings (one per app, built on first use)."""

    hub: FeedHub
    keepalive_seconds: float = KEEPALIVE_SECONDS
    send_timeout_seconds: float = SEND_TIMEOUT_SECONDS


def get_feed(request: Request) -> Feed:
    services = get_services(request)
    feed: Feed | None = getattr(request.app.state, "feed", None)
    if feed is None or feed.hub.client is not services.engine.client:
        feed = Feed(FeedHub(services.engine.client, services.engine.keys))
        request.app.state.feed = feed
    return feed


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

    def __init__(self, content: AsyncIterator[bytes], send_timeout: float) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.send_timeout = send_timeout
        self.stalled = False

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
        reset = {"reason": "history_trimmed", "groups": list(item.groups)}
        return b"event: reset\ndata: " + orjson.dumps(reset) + b"\n\n"
    body = item.view(flt)
    return b"id: " + item.position.encode().encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


async def _messages(feed: Feed, flt: Filter, after: Position | None) -> AsyncIterator[bytes]:
    first = True
    async for item in follow(feed.hub, flt, after, keepalive_seconds=feed.keepalive_seconds):
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
        **problem_responses(401, 403, 422),
    },
    summary="Live stock changes (Server-Sent Events), resumable with Last-Event-ID",
)
async def events(
    feed: Annotated[Feed, Depends(get_feed)],
    _: ReadKey,
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
    return EventStream(_messages(feed, flt, after), feed.send_timeout_seconds)
