"""API keys: high-entropy, recognisable, stored only as a hash, verified through a short
cache, revocable; `inventory-cache keys ...` for operators; public availability reads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from inventory_cache.api.main import create_app
from inventory_cache.apikeys import (
    Authenticator,
    KeyDirectory,
    StoredKey,
    create_key,
    find_key,
    hash_key,
    list_keys,
    mirror_keys,
    mirror_revocation,
    parse_scopes,
    rebuild_mirror,
    revoke,
    revoke_key,
)
from inventory_cache.engine import StockEngine
from inventory_cache.keys import Keys
from persistence.db import make_engine
from tests.support import api as api_support
from tests.support.api import CLI, Api, Database
from tests.support.postgres import fresh_database
from tests.support.services import make_settings


@pytest.fixture
def db() -> Iterator[Engine]:
    with fresh_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_keys_are_long_random_prefixed_and_stored_only_as_their_hash(db: Engine) -> None:
    made = [create_key(db, name=f"k{i}", scopes=["read"]) for i in range(3)]

    with db.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).mappings().all()
    stored = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    for plain, record in made:
        assert plain.startswith("invk_") and len(plain) == 48
        assert plain not in stored and plain.removeprefix("invk_") not in stored
        assert record.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert len({p for p, _ in made}) == 3
    assert {r["key_hash"] for r in rows} == {r.key_hash for _, r in made}
    assert {r["scopes"] for r in rows} == {"read"}


def test_scopes_are_checked_and_kept_in_a_canonical_order(db: Engine) -> None:
    _, record = create_key(db, name="k", scopes=parse_scopes("warehouse, read"))
    with db.connect() as conn:
        (scopes,) = conn.execute(text("SELECT scopes FROM api_keys")).one()

    assert scopes == "read,warehouse" and record.scopes == {"read", "warehouse"}
    for bad in ("", "read,root", "Read"):
        with pytest.raises(ValueError, match="scopes must be"):
            parse_scopes(bad)


def test_find_revoke_and_list_never_show_the_secret(db: Engine) -> None:
    plain, record = create_key(db, name="till-7", scopes=["checkout"])
    digest = hashlib.sha256(plain.encode()).hexdigest()

    found = find_key(db, digest)
    assert found is not None and found.id == record.id and found.last_used_at is not None
    assert revoke_key(db, record.id) is True
    first_revocation = find_key(db, digest)
    assert revoke_key(db, record.id) is True
    assert revoke_key(db, "key_missing") is False
    again = find_key(db, digest)

    assert first_revocation is not None and again is not None
    assert again.revoked_at == first_revocation.revoked_at is not None
    (listed,) = list_keys(db)
    assert listed.name == "till-7" and plain not in repr(listed)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_verified_keys_are_cached_so_revocation_lands_within_the_ttl(db: Engine) -> None:
    plain, record = create_key(db, name="k", scopes=["read"])
    lookups: list[str] = []

    async def find(key_hash: str) -> StoredKey | None:
        lookups.append(key_hash)
        return find_key(db, key_hash)

    clock = Clock()
    auth = Authenticator(find, cache_seconds=5, clock=clock)

    first = await auth.authenticate(plain)
    assert first is not None and first.scopes == {"read"} and first.key_id == record.id
    revoke_key(db, record.id)
    clock.t += 4.9
    assert await auth.authenticate(plain) == first  # cached: PostgreSQL not asked
    assert len(lookups) == 1
    clock.t += 0.2
    assert await auth.authenticate(plain) is None
    assert len(lookups) == 2


async def test_a_burst_with_a_cold_cache_makes_one_lookup(db: Engine) -> None:
    plain, _ = create_key(db, name="k", scopes=["checkout"])
    lookups: list[str] = []

    async def find(key_hash: str) -> StoredKey | None:
        lookups.append(key_hash)
        await asyncio.sleep(0.01)
        return find_key(db, key_hash)

    auth = Authenticator(find)
    principals = await asyncio.gather(*(auth.authenticate(plain) for _ in range(200)))

    assert len(lookups) == 1
    assert {p.scopes if p else None for p in principals} == {frozenset({"checkout"})}


async def test_malformed_tokens_never_reach_the_database() -> None:
    lookups: list[str] = []

    async def find(key_hash: str) -> StoredKey | None:
        lookups.append(key_hash)
        return None

    auth = Authenticator(find)
    for token in ("", "secret", "invk_short", "xxxx_" + "a" * 43, "invk_" + "a" * 44):
        assert await auth.authenticate(token) is None
    assert lookups == []
    assert await auth.authenticate("invk_" + "a" * 43) is None
    assert await auth.authenticate("invk_" + "a" * 43) is None
    assert len(lookups) == 1  # unknown keys are cached too


async def test_a_revoked_key_gets_401_over_http(
    real_redis: Any, sync_redis: Any, prefix: str, api_database: Database
) -> None:
    plain, record = create_key(api_database.engine, name="short-lived", scopes=["read"])
    settings = make_settings(prefix, api_key_cache_seconds=0)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    app = create_app(settings, engine=engine, database=api_database.engine)
    headers = {"Authorization": f"Bearer {plain}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            before = await c.get("/v1/availability/A", headers=headers)
            revoke(api_database.engine, record.id, redis=sync_redis, keys=engine.keys)
            after = await c.get("/v1/availability/A", headers=headers)

    assert before.status_code == 200
    assert after.status_code == 401 and after.json()["code"] == "unauthorized"


async def test_public_reads_open_availability_only(
    real_redis: Any, prefix: str, api_database: Database
) -> None:
    settings = make_settings(prefix, public_reads=True)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    app = create_app(settings, engine=engine, database=api_database.engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            one = await c.get("/v1/availability/A")
            batch = await c.get("/v1/availability?sku=A")
            bad_key = await c.get("/v1/availability/A", headers={"Authorization": "Bearer nope"})
            stock = await c.get("/v1/stock/A")

    assert one.status_code == 200 and batch.status_code == 200
    assert bad_key.status_code == 401  # a key that is sent must be valid
    assert stock.status_code == 401


async def test_without_public_reads_availability_needs_a_key(api: Api) -> None:
    assert (await api.client.get("/v1/availability/A")).status_code == 401


def _cli(database_url: str, *args: str, prefix: str = "unused") -> subprocess.CompletedProcess[str]:
    env = api_support.server_env(prefix, database_url)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_prints_the_new_key_alone_then_lists_and_revokes(
    db: Engine, sync_redis: Any, prefix: str
) -> None:
    url = db.url.render_as_string(hide_password=False)

    created = _cli(
        url, "keys", "create", "--scopes", "read,checkout", "--name", "shop", prefix=prefix
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("invk_")
    (record,) = list_keys(db)
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert record.scopes == {"read", "checkout"} and record.name == "shop"

    listed = _cli(url, "keys", "list")
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["id"] == record.id and row["scopes"] == ["checkout", "read"]
    assert key not in listed.stdout and record.key_hash not in listed.stdout

    assert _cli(url, "keys", "revoke", record.id, prefix=prefix).returncode == 0
    mirrored = sync_redis.hget(Keys(prefix, 16).api_keys(), "r:" + record.key_hash)
    assert mirrored is not None  # the mirror refuses it too
    assert list_keys(db)[0].revoked_at is not None
    assert _cli(url, "keys", "revoke", "key_missing", prefix=prefix).returncode == 1
    refused = _cli(url, "keys", "create", "--scopes", "read,root", prefix=prefix)
    assert refused.returncode == 2 and refused.stdout == ""


# ------------------------------------------------------- the Redis mirror (no PostgreSQL)


async def _failing_fallback(key_hash: str) -> StoredKey | None:
    raise AssertionError("PostgreSQL asked for a key the mirror holds")


async def test_a_mirrored_key_and_its_revocation_are_read_from_redis_alone(
    db: Engine, real_redis: Any, sync_redis: Any, prefix: str
) -> None:
    keys = Keys(prefix, 16)
    plain, record = create_key(db, name="till", scopes=["checkout", "read"])
    mirror_keys(sync_redis, keys, [record])
    directory = KeyDirectory(real_redis.execute_command, keys, _failing_fallback)

    found = await directory.find(hash_key(plain))
    assert found is not None and (found.id, found.name) == (record.id, "till")
    assert found.scopes == {"checkout", "read"} and found.revoked_at is None

    assert mirror_revocation(sync_redis, keys, record.id) is True
    revoked = await directory.find(hash_key(plain))
    assert revoked is not None and revoked.revoked_at is not None
    assert mirror_revocation(sync_redis, keys, "key_missing") is False


async def test_a_key_the_mirror_lacks_is_read_from_postgresql_once_then_mirrored(
    db: Engine, real_redis: Any, prefix: str
) -> None:
    keys = Keys(prefix, 16)
    plain, record = create_key(db, name="old", scopes=["read"])
    asked: list[str] = []

    async def fallback(key_hash: str) -> StoredKey | None:
        asked.append(key_hash)
        return find_key(db, key_hash)

    directory = KeyDirectory(real_redis.execute_command, keys, fallback)
    first = await directory.find(hash_key(plain))
    again = await directory.find(hash_key(plain))

    assert first is not None and again is not None and first.id == again.id == record.id
    assert asked == [hash_key(plain)]
    assert await real_redis.hget(keys.api_keys(), "i:" + record.id) == hash_key(plain).encode()


def test_rebuilding_the_mirror_records_revocations_made_while_postgresql_was_away(
    db: Engine, sync_redis: Any, prefix: str
) -> None:
    keys = Keys(prefix, 16)
    (_, live), (_, leaked), (_, old) = (
        create_key(db, name=n, scopes=["read"]) for n in ("live", "leaked", "old")
    )
    mirror_keys(sync_redis, keys, [live, leaked])
    mirror_revocation(sync_redis, keys, leaked.id)  # PostgreSQL was down at the time
    revoke_key(db, old.id)

    assert rebuild_mirror(sync_redis, keys, db) == 3

    by_id = {k.id: k for k in list_keys(db)}
    assert by_id[leaked.id].revoked_at is not None and by_id[live.id].revoked_at is None
    flags = sync_redis.hmget(keys.api_keys(), [f"r:{k.key_hash}" for k in (live, leaked, old)])
    assert [f is not None for f in flags] == [False, True, True]
    assert sync_redis.hget(keys.api_keys(), "h:" + old.key_hash) is not None


async def test_last_used_at_is_written_in_batches_off_the_request_path(
    real_redis: Any, sync_redis: Any, prefix: str, api_database: Database
) -> None:
    _, record = create_key(api_database.engine, name="batched", scopes=["read"])
    plain, stored = create_key(api_database.engine, name="batched", scopes=["read"])
    mirror_keys(sync_redis, Keys(prefix, 16), [stored])
    settings = make_settings(prefix)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    app = create_app(settings, engine=engine, database=api_database.engine)

    def last_used() -> Any:
        (k,) = [k for k in list_keys(api_database.engine) if k.id == stored.id]
        return k.last_used_at

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            headers = {"Authorization": f"Bearer {plain}"}
            for _ in range(3):
                assert (await c.get("/v1/availability/A", headers=headers)).status_code == 200
            assert last_used() is None  # not on the request path
            await app.state.services.status.flush_last_used()
            written = last_used()

    assert written is not None
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60
    assert record.last_used_at is None
