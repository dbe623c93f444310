"""API keys: created, verified, listed and revoked; stored only as a SHA-256 hash.

A key is `invk_` followed by 43 URL-safe characters (256 random bits): the prefix lets
secret scanners and people recognise it, the entropy makes a fast unsalted hash safe to
store (nobody can brute-force 2**256 candidates, so no slow KDF is needed and verifying
costs microseconds). A row is found by its hash through the unique index and the hash is
then compared with `hmac.compare_digest`; looking up by hash leaks nothing useful, since
timing reveals at most something about a hash whose preimage nobody knows.

The read path must not ask PostgreSQL on every request, so `Authenticator` remembers
each verified (or refused) hash for `INVENTORY_API_KEY_CACHE_SECONDS`: a revocation takes
effect in every API process within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from persistence.models import ApiKey

KEY_PREFIX = "invk_"
_KEY_LENGTH = len(KEY_PREFIX) + 43
SCOPES = ("read", "checkout", "warehouse", "admin")
_NEGATIVE_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: the key's row id (never the key itself) and its scopes."""

    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    name: str
    key_hash: str
    scopes: frozenset[str]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str | Iterable[str]) -> frozenset[str]:
    """`read,checkout` → {"read", "checkout"}; an unknown scope is a ValueError."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = scopes.difference(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
    return scopes


FindKey = Callable[[str], Awaitable[StoredKey | None]]


class Authenticator:
    """Bearer token → Principal, with a short in-process cache of the store's answers."""

    def __init__(
        self,
        find: FindKey,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find = find
        self._ttl = cache_seconds
        self._clock = clock
        self._known: dict[str, tuple[float, Principal | None]] = {}
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        if len(token) != _KEY_LENGTH or not token.startswith(KEY_PREFIX):
            return None  # not one of ours: no lookup, nothing cached
        digest = hash_key(token)
        hit = self._known.get(digest)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        # A burst of requests with a key not yet cached (a flash sale right after a
        # restart) makes one lookup, not one each.
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(digest))
            pending.add_done_callback(_retrieve)
            self._pending[digest] = pending
        return await asyncio.shield(pending)

    async def _lookup(self, digest: str) -> Principal | None:
        started = self._clock()
        try:
            row = await self._find(digest)
        finally:
            del self._pending[digest]
        principal = None
        if (
            row is not None
            and row.revoked_at is None
            and hmac.compare_digest(row.key_hash.encode(), digest.encode())
        ):
            principal = Principal(row.id, row.name, row.scopes)
        if principal is None and len(self._known) >= _NEGATIVE_CACHE_MAX:
            self._known.clear()  # guessed keys must not grow memory without bound
        self._known[digest] = (started + self._ttl, principal)
        return principal


def _retrieve(future: asyncio.Future[Principal | None]) -> None:
    """Mark a failed lookup as seen: its waiters got the error, or all went away."""
    if not future.cancelled():
        future.exception()


# ---------------------------------------------------------------------------- storage
# Blocking SQLAlchemy calls: the CLI calls them directly, the API through a thread.


def _stored(row: ApiKey) -> StoredKey:
    return StoredKey(
        id=row.id,
        name=row.name,
        key_hash=row.key_hash,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def create_key(db: Engine, *, name: str, scopes: Iterable[str]) -> tuple[str, StoredKey]:
    """A new key: the plain key (shown once, never stored) and its stored record."""
    checked = parse_scopes(scopes)
    plain = new_key()
    row = ApiKey(
        id="key_" + secrets.token_hex(8),
        name=name,
        key_hash=hash_key(plain),
        scopes=",".join(s for s in SCOPES if s in checked),
    )
    with Session(db) as session, session.begin():
        session.add(row)
        session.flush()
        session.refresh(row)
        stored = _stored(row)
    return plain, stored


def list_keys(db: Engine) -> list[StoredKey]:
    with Session(db) as session:
        return [_stored(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]


def revoke_key(db: Engine, key_id: str) -> bool:
    """Revoke by id; False if no such key. Revoking twice keeps the first time."""
    with Session(db) as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is None:
            return False
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
        return True


def find_key(db: Engine, key_hash: str) -> StoredKey | None:
    """The key with this hash, its `last_used_at` refreshed when it is live."""
    with Session(db) as session, session.begin():
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()
        if row is None:
            return None
        if row.revoked_at is None:
            row.last_used_at = datetime.now(UTC)
        return _stored(row)
