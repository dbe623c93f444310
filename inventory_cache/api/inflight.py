"""Per API key, how many reservation lines this process is placing right now.

A 100-line order costs about 80 script calls (one per slot group), so twenty clients
sending such orders keep the engine's pipelines busy and everyone else's one-line
checkout waits behind them. The request rate limit (`ratelimit.py`) counts requests, not
their size; this counts the lines of multi-line orders: a key with
`INVENTORY_MAX_LINES_IN_FLIGHT_PER_KEY` such lines already in flight gets 429
`rate_limited` (`Retry-After: 1`) for another multi-line order until some finish. An
order is always admitted when its key has nothing in flight, so a limit below the largest
order never locks a key out. The count is per process (no Redis call): with
several API processes a key may have that many lines in flight in each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
