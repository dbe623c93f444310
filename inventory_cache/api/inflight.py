"""Per API key, how many reservation lines this process is placing right now.

A 100-line order is about 80 script calls, one per slot group (an order over
`INVENTORY_ONE_SCRIPT_MAX_LINES` lines is not one script, which would hold Redis for
milliseconds: `engine/reservations.py`), so twenty clients sending such
orders keep Redis and the engine's pipelines busy and everyone else's one-line checkout
waits behind them. The request rate limit (`ratelimit.py`) counts requests, not
their size; this counts the lines of multi-line orders: a key with
`INVENTORY_MAX_LINES_IN_FLIGHT_PER_KEY` such lines already in flight gets 429
`rate_limited` (`Retry-After: 1`) for another multi-line order until some finish. An
order is always admitted when its key has nothing in flight, so a limit below the largest
order never locks a key out. The count is per process (no Redis call): with
several API processes a key may have that many lines in flight in each.

Twenty keys within their own limits still make forty large orders at once, and each
one-line checkout of everyone else then waits behind their script calls
(`BENCHMARKS.md`, "Pressure"). So the process also places at most
`INVENTORY_MAX_LINES_IN_FLIGHT` lines of multi-line orders at a time (`LineQueue`): an
order beyond it waits, in arrival order, for earlier ones to finish, rather than
competing with the one-line checkouts for the event loop and Redis.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from inventory_cache.api.problems import RateLimited


class LinesInFlight:
    def __init__(self) -> None:
        self._lines: dict[str, int] = {}

    def of(self, key_id: str) -> int:
        return self._lines.get(key_id, 0)

    @contextmanager
    def hold(self, key_id: str, lines: int, limit: int) -> Iterator[None]:
        """Count `lines` for `key_id` while the block runs; 429 beyond `limit` (0: none).

        A one-line order is neither counted nor refused: it is the baseline cost the
        request rate limit governs, and a storefront that sends every customer's checkout
        with one key must not see its flash-sale burst refused here.
        """
        if lines <= 1:
            yield
            return
        busy = self._lines.get(key_id, 0)
        if limit and busy and busy + lines > limit:
            raise RateLimited(1)
        self._lines[key_id] = busy + lines
        try:
            yield
        finally:
            left = self._lines[key_id] - lines
            if left:
                self._lines[key_id] = left
            else:
                del self._lines[key_id]


class LineQueue:
    """Lines of multi-line orders placed at once in this process, at most `capacity`;
    the rest wait in arrival order. An order larger than the capacity goes alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.placing = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @asynccontextmanager
    async def turn(self, lines: int) -> AsyncIterator[None]:
        if lines <= 1 or not self.capacity:
            yield
            return
        if self._waiting or not self._fits(lines):
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (lines, ready)
            self._waiting.append(entry)
            try:
                await ready
            except BaseException:
                if ready.done() and not ready.cancelled():  # given its turn, then cancelled
                    self._release(lines)
                else:
                    self._waiting.remove(entry)
                    self._wake()
                raise
        else:
            self.placing += lines
        try:
            yield
        finally:
            self._release(lines)

    def _fits(self, lines: int) -> bool:
        return self.placing == 0 or self.placing + lines <= self.capacity

    def _release(self, lines: int) -> None:
        self.placing -= lines
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            lines, ready = self._waiting.popleft()
            self.placing += lines
            ready.set_result(None)
