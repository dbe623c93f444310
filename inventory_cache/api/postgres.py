"""The API's PostgreSQL: one SQLAlchemy engine and pool per process, and the worker
thread each call runs in.

SQLAlchemy is blocking here (as for the worker), so every call leaves the event loop:
`run()` hands a data function (`api/data/`, one module per area) the engine in a worker
thread. None of this is on the availability or checkout path: keys come from their Redis
mirror (`apikeys.KeyDirectory`; PostgreSQL only for a key the mirror lacks), and stock
lives in Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

from anyio import to_thread
from sqlalchemy import Engine, text

from inventory_cache.apikeys import StoredKey, find_key

P = ParamSpec("P")
T = TypeVar("T")


class Postgres:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def run(
        self, fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(engine, *args, **kwargs)` in a worker thread."""
        return await to_thread.run_sync(partial(fn, self.engine, *args, **kwargs))

    async def find_key(self, key_hash: str) -> StoredKey | None:
        return await to_thread.run_sync(find_key, self.engine, key_hash)

    async def ping(self) -> bool:
        """True when PostgreSQL answers a query."""
        return await to_thread.run_sync(self._ping)

    def _ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True
