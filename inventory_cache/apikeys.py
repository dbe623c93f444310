"""API keys: created, verified, listed and revoked; stored only as a SHA-256 hash.

A key is `invk_` followed by 43 URL-safe characters (256 random bits): the prefix lets
secret scanners and people recognise it, the entropy makes a fast unsalted hash safe to
store (nobody can brute-force 2**256 candidates, so no slow KDF is needed and verifying
costs microseconds). A row is found by its hash through the unique index and the hash is
then compared with `hmac.compare_digest`; looking up by hash leaks nothing useful, since
timing reveals at most something about a hash whose preimage nobody knows.

Authentication must go on while PostgreSQL is down (Redis serves the checkout alone), so
every key is mirrored into one Redis hash (`Keys.api_keys`): its hash, id, name and scopes
when it is created, its revocation when it is revoked; `warmup` rebuilds the mirror from
PostgreSQL. `KeyDirectory` answers from the mirror and asks PostgreSQL only for a key the
mirror lacks (a key made before the mirror existed), mirroring it then. `Authenticator`
remembers each answer for `INVENTORY_API_KEY_CACHE_SECONDS`, so a revocation takes effect
in every API process within that time, and PostgreSQL's outage does not matter to it.

`last_used_at` is not written on the request path: the authenticator notes when each key
was last seen, and the API writes those times in one statement every half minute
(`record_last_used`), skipping the round while PostgreSQL is away.

Revoking while PostgreSQL is down: `inventory-cache keys revoke` revokes in the mirror
first (the API processes stop accepting the key within the cache time), then in
PostgreSQL; if PostgreSQL cannot be reached it says so and exits 1, and the next `warmup`
(or `keys revoke` again) writes the revocation into PostgreSQL: a revocation found in the
mirror is never undone by a rebuild.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session

from inventory_cache.errors import RedisFull
from inventory_cache.keys import Keys
from persistence.models import ApiKey

log = logging.getLogger(__name__)

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


class KeyDirectory:
    """Key hash → stored key: the Redis mirror first, PostgreSQL only for a key the
    mirror does not hold (then mirrored). With Redis unreachable it asks PostgreSQL; a
    key the mirror lacks while PostgreSQL is down raises PostgreSQL's error (503): the
    service cannot tell such a key from a made-up one."""

    def __init__(
        self, command: Callable[..., Awaitable[Any]], keys: Keys, fallback: FindKey
    ) -> None:
        self._command = command
        self._hash = keys.api_keys()
        self._fallback = fallback

    async def find(self, key_hash: str) -> StoredKey | None:
        try:
            raw, revoked = await self._command(
                "HMGET", self._hash, "h:" + key_hash, "r:" + key_hash
            )
        except RedisError as exc:
            log.warning("API key mirror unreadable (%r): asking PostgreSQL", exc)
            return await self._fallback(key_hash)
        if raw is not None:
            return _from_mirror(key_hash, raw, revoked)
        stored = await self._fallback(key_hash)
        if stored is not None:
            try:
                await self._command("HSET", self._hash, *_mirror_fields(stored))
            except (RedisError, RedisFull) as exc:  # the next use tries again
                log.warning("could not mirror API key %s: %r", stored.id, exc)
        return stored


def _mirror_fields(stored: StoredKey) -> list[str]:
    """HSET arguments of one key: its record, its id → hash entry and, if it is revoked,
    the revocation (a live record never clears one: revoking is for good)."""
    record = {"id": stored.id, "name": stored.name, "scopes": ",".join(sorted(stored.scopes))}
    fields = ["h:" + stored.key_hash, json.dumps(record), "i:" + stored.id, stored.key_hash]
    if stored.revoked_at is not None:
        fields += ["r:" + stored.key_hash, str(int(stored.revoked_at.timestamp() * 1000))]
    return fields


def _from_mirror(key_hash: str, raw: bytes | str, revoked: bytes | str | None) -> StoredKey:
    record = json.loads(raw)
    return StoredKey(
        id=record["id"],
        name=record["name"],
        key_hash=key_hash,
        scopes=frozenset(s for s in record["scopes"].split(",") if s),
        revoked_at=None if revoked is None else datetime.fromtimestamp(int(revoked) / 1000, UTC),
    )


def mirror_keys(redis: Any, keys: Keys, stored: Iterable[StoredKey]) -> int:
    """Write keys into the mirror (blocking client: the CLI, warmup); how many."""
    pipe = redis.pipeline(transaction=False)
    n = 0
    for one in stored:
        pipe.hset(keys.api_keys(), items=_mirror_fields(one))
        n += 1
    pipe.execute()
    return n


def mirror_revocation(redis: Any, keys: Keys, key_id: str) -> bool:
    """Mark a key revoked in the mirror (first time kept); False if the mirror lacks it."""
    key_hash = redis.hget(keys.api_keys(), "i:" + key_id)
    if key_hash is None:
        return False
    digest = key_hash.decode() if isinstance(key_hash, bytes) else str(key_hash)
    redis.hsetnx(keys.api_keys(), "r:" + digest, str(int(time.time() * 1000)))
    return True


def revoke(db: Engine, key_id: str, *, redis: Any = None, keys: Keys | None = None) -> str:
    """Revoke a key in the mirror (when `redis` is given), then in PostgreSQL: `revoked`,
    `unknown`, or `mirror_only` when PostgreSQL could not be reached but the mirror
    held the key (the API refuses it anyway; `warmup` writes it into PostgreSQL later).
    Raises PostgreSQL's error when neither store took the revocation."""
    from sqlalchemy.exc import OperationalError

    mirrored = redis is not None and keys is not None and mirror_revocation(redis, keys, key_id)
    try:
        found = revoke_key(db, key_id)
    except OperationalError:
        if not mirrored:
            raise
        return "mirror_only"
    return "revoked" if found else "unknown"


def rebuild_mirror(redis: Any, keys: Keys, db: Engine) -> int:
    """`warmup`: every key of PostgreSQL into the mirror, after writing into PostgreSQL
    the revocations that only the mirror holds (made while PostgreSQL was down)."""
    stored = list_keys(db)
    flags = redis.hmget(keys.api_keys(), ["r:" + k.key_hash for k in stored]) if stored else []
    for key, flag in zip(stored, flags, strict=True):
        if flag is not None and key.revoked_at is None:
            revoke_key(db, key.id)
    return mirror_keys(redis, keys, list_keys(db))


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
        self._used: dict[str, float] = {}

    def take_used(self) -> dict[str, datetime]:
        """When each key was last accepted since the previous call (for `last_used_at`)."""
        used, self._used = self._used, {}
        return {key_id: datetime.fromtimestamp(t, UTC) for key_id, t in used.items()}

    def give_back_used(self, used: Mapping[str, datetime]) -> None:
        """Times that could not be written (PostgreSQL away): kept for the next round."""
        for key_id, at in used.items():
            self._used[key_id] = max(self._used.get(key_id, 0.0), at.timestamp())

    async def authenticate(self, token: str) -> Principal | None:
        if len(token) != _KEY_LENGTH or not token.startswith(KEY_PREFIX):
            return None  # not one of ours: no lookup, nothing cached
        digest = hash_key(token)
        hit = self._known.get(digest)
        if hit is not None and hit[0] > self._clock():
            principal = hit[1]
        else:
            principal = await self._resolve(digest)
        if principal is not None:
            self._used[principal.key_id] = time.time()
        return principal

    async def _resolve(self, digest: str) -> Principal | None:
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
    """A new key: the plain key (shown once, never stored) and its stored record (put it
    in the mirror too, `mirror_keys`, as `keys create` does)."""
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


def record_last_used(db: Engine, used: Mapping[str, datetime]) -> None:
    """Write when keys were last used, in one statement; a time never goes back."""
    if not used:
        return
    query = (
        update(ApiKey)
        .where(ApiKey.id == bindparam("key_id"))
        .where(ApiKey.last_used_at.is_(None) | (ApiKey.last_used_at < bindparam("at")))
        .values(last_used_at=bindparam("at"))
    )
    with db.begin() as conn:
        conn.execute(query, [{"key_id": k, "at": at} for k, at in used.items()])


def find_key(db: Engine, key_hash: str) -> StoredKey | None:
    """The key with this hash, its `last_used_at` refreshed when it is live."""
    with Session(db) as session, session.begin():
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()
        if row is None:
            return None
        if row.revoked_at is None:
            row.last_used_at = datetime.now(UTC)
        return _stored(row)
