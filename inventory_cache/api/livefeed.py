"""The live feed's HTTP side, one per app (built by the lifespan): the hub that reads the
streams, the timings of `GET /v1/events` and the streams open per API key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from inventory_cache.api.problems import RateLimited
from inventory_cache.engine import StockEngine
from inventory_cache.feed import FeedHub
from inventory_cache.settings import Settings

KEEPALIVE_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0
FULL_RETRY_AFTER_S = 5  # Retry-After of a 429 when the feed is full
KEY_CHECK_SECONDS = 0.5  # how often a stream re-checks its key (through the key cache)


@dataclass
class Feed:
    """The app's hub, the HTTP side's timings and the open streams."""

    hub: FeedHub
    keepalive_seconds: float = KEEPALIVE_SECONDS
    send_timeout_seconds: float = SEND_TIMEOUT_SECONDS
    max_clients: int = 500
    max_clients_per_key: int = 20
    key_check_seconds: float = KEY_CHECK_SECONDS
    clients: Counter[str] = field(default_factory=Counter)

    def admit(self, key_id: str) -> Callable[[], None]:
        """Count a new stream of `key_id`, or 429; returns the call that uncounts it."""
        if self.clients.total() >= self.max_clients:
            raise RateLimited(FULL_RETRY_AFTER_S, "this server's live feed is full")
        if self.clients[key_id] >= self.max_clients_per_key:
            raise RateLimited(FULL_RETRY_AFTER_S, "this API key has its most live feeds open")
        self.clients[key_id] += 1
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                self.clients[key_id] -= 1
                if not self.clients[key_id]:
                    del self.clients[key_id]

        return release

    @classmethod
    def from_settings(cls, engine: StockEngine, settings: Settings) -> Feed:
        return cls(
            FeedHub(
                engine.client, engine.keys, catchup_per_second=settings.feed_catchup_per_second
            ),
            max_clients=settings.feed_max_clients,
            max_clients_per_key=settings.feed_max_clients_per_key,
        )
