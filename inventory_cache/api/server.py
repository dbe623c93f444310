"""The HTTP/1.1 connection limits a public-facing server needs, on uvicorn's httptools
protocol: a request's headers are bounded in size, and a client that stalls is
disconnected.

uvicorn with httptools has neither: a 20-50 MB header was accepted (and buffered) and
connections that never finished their headers or their body stayed open indefinitely;
a few thousand of them cost memory and file descriptors and slowed every other client.

- Headers (request line included) larger than `max_header_bytes` → 431
  `header_too_large` (problem+json), then the connection is closed. Counted as they
  arrive, so an endless header is cut off at the limit rather than buffered whole.
- A connection that has not completed a request's headers within
  `header_timeout_seconds` of its first byte (or of connecting, or of the previous
  answer on a kept-alive connection) is closed.
- A request body that receives nothing for `body_timeout_seconds` is abandoned: the
  connection is closed (the application sees the client disconnect).

Settings: INVENTORY_MAX_HEADER_BYTES, INVENTORY_HEADER_TIMEOUT_SECONDS,
INVENTORY_BODY_TIMEOUT_SECONDS (`settings.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inventory_cache.api.problems import problem_body
from inventory_cache.settings import Settings, get_settings

LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_header_bytes,
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
        )


@lru_cache(maxsize=1)
def _configured() -> Limits:
    """Read once per process: uvicorn builds a protocol per connection, outside the app,
    so the app's lifespan (`main.py`) cannot hand it these."""
    return Limits.of(get_settings())


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (`http=` of `uvicorn.Config`).

    uvicorn builds one per connection, in each worker process, with its own arguments: the
    limits come from the process's settings (`INVENTORY_*`), or `limits` in a subclass.
    """

    limits: Limits | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or _configured()
        self._in_headers = True  # waiting for (the rest of) a request's headers
        self._header_bytes = 0
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ timers
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            if self._timer is None:  # the first byte of a request on a kept-alive connection
                self._arm(self._limits.header_timeout_s)
            self._header_bytes += len(data)
        elif self.cycle is not None and self.cycle.more_body:
            self._arm(self._limits.body_timeout_s)
        super().data_received(data)
        if (
            not self._refused
            and self._in_headers
            and self._header_bytes > self._limits.max_header_bytes
        ):
            self._refuse_headers()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._limits.max_header_bytes:
            self._refuse_headers()
            return
        self._in_headers = False
        self._header_bytes = 0
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self._limits.body_timeout_s)
        else:
            self._disarm()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._disarm()  # the answer may take its time; keep-alive then has uvicorn's timer
        self._in_headers = True
        self._header_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timer covers an idle connection from here

    def _refuse_headers(self) -> None:
        self._refused = True
        self._disarm()
        limit = self._limits.max_header_bytes
        body = problem_body(
            431,
            "header_too_large",
            "Request header fields too large",
            f"the request's headers exceed {limit} bytes",
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        # A lingering close: stop sending, discard what still comes for a moment, then
        # close. Closing at once with unread bytes resets the connection, and a client
        # still sending its header would then never read the 431.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._arm(min(LINGER_S, self._limits.header_timeout_s))
        else:
            self.transport.close()
