"""The API's reads of PostgreSQL: API keys, the movements ledger, readiness.

SQLAlchemy is blocking here (one engine and pool per process, as for the worker), so
each call runs in a worker thread. None of this is on the availability or checkout path:
keys come from their Redis mirror (`apikeys.KeyDirectory`; PostgreSQL only for a key the
mirror lacks), and stock lives in Redis.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from sqlalchemy import Engine, select, text

from inventory_cache.apikeys import StoredKey, find_key
from persistence.models import Movement

MOVEMENT_FIELDS = (
    "id",
    "op_id",
    "sku",
    "location",
    "type",
    "reason",
    "ref",
    "delta_on_hand",
    "delta_locked",
    "on_hand_after",
    "locked_after",
    "created_at",
    "bundle",
)


class Ledger:
    def __init__(self, db: Engine) -> None:
        self.db = db

    async def find_key(self, key_hash: str) -> StoredKey | None:
        return await to_thread.run_sync(find_key, self.db, key_hash)

    async def ping(self) -> bool:
        """True when PostgreSQL answers a query."""
        return await to_thread.run_sync(self._ping)

    def _ping(self) -> bool:
        try:
            with self.db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def movements(
        self, *, sku: str | None, location: str | None, limit: int, before: int | None
    ) -> list[dict[str, Any]]:
        return await to_thread.run_sync(self._movements, sku, location, limit, before)

    def _movements(
        self, sku: str | None, location: str | None, limit: int, before: int | None
    ) -> list[dict[str, Any]]:
        """Newest first by `id`, which is the order the worker recorded them in (per SKU,
        the order they happened in Redis)."""
        t = Movement.__table__.c
        query = select(*(t[name] for name in MOVEMENT_FIELDS)).order_by(t.id.desc()).limit(limit)
        if sku is not None:
            query = query.where(t.sku == sku)
        if location is not None:
            query = query.where(t.location == location)
        if before is not None:
            query = query.where(t.id < before)
        with self.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in rows]
