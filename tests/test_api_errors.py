"""Every error is problem+json with its code; bad input never changes state (invariant 6);
no key → 401 and a key without the scope → 403 on every write route."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from inventory_cache.api.main import create_app
from inventory_cache.api.problems import POSTGRES_AWAY
from inventory_cache.apikeys import StoredKey, hash_key, mirror_keys
from inventory_cache.engine import StockEngine
from persistence.db import make_engine
from tests.support.api import Api, Database, assert_problem
from tests.support.ports import free_port
from tests.support.services import make_settings


def write_routes() -> list[tuple[str, str]]:
    """Every operation that changes state, including those other areas add to the app."""
    paths = create_app(make_settings("unused")).openapi()["paths"]
    return sorted(
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    )


# The scope the contract gives each write route this module serves.
WRITE_SCOPES = {
    ("POST", "/v1/inbound"): "warehouse",
    ("POST", "/v1/adjustments"): "warehouse",
    ("POST", "/v1/returns"): "warehouse",
    ("POST", "/v1/reservations"): "checkout",
    ("POST", "/v1/reservations/{order_id}/cancel"): "checkout",
    ("POST", "/v1/reservations/{order_id}/ship"): "warehouse",
    ("POST", "/v1/transfers"): "warehouse",
    ("POST", "/v1/transfers/{transfer_id}/ship"): "warehouse",
    ("POST", "/v1/transfers/{transfer_id}/receive"): "warehouse",
    ("POST", "/v1/transfers/{transfer_id}/cancel"): "warehouse",
}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.mark.parametrize(("method", "path"), write_routes())
async def test_every_write_route_wants_a_key_with_its_scope(
    api: Api, method: str, path: str
) -> None:
    url = concrete(path)
    nobody = await api.client.request(method, url, json={})
    stranger = await api.client.request(
        method, url, json={}, headers={"Authorization": "Bearer invk_" + "x" * 43}
    )
    reader = await api.client.request(method, url, json={}, headers=api.auth("read"))

    assert_problem(nobody, 401, "unauthorized")
    assert nobody.headers["www-authenticate"] == "Bearer"
    assert_problem(stranger, 401, "unauthorized")
    assert_problem(reader, 403, "forbidden")


@pytest.mark.parametrize(("method", "path"), sorted(WRITE_SCOPES))
async def test_only_the_routes_scope_or_admin_passes(api: Api, method: str, path: str) -> None:
    needed = WRITE_SCOPES[(method, path)]
    for scope in ("read", "checkout", "warehouse", "admin"):
        r = await api.client.request(method, concrete(path), json={}, headers=api.auth(scope))
        if scope in (needed, "admin"):
            assert r.status_code not in (401, 403), (scope, r.text)
        else:
            assert_problem(r, 403, "forbidden")


def test_the_scope_table_covers_every_write_route_of_this_module() -> None:
    assert set(WRITE_SCOPES) <= set(write_routes())


async def test_reads_want_the_read_scope(api: Api) -> None:
    for path in ("/v1/availability/A", "/v1/availability?sku=A", "/v1/stock/A", "/v1/movements"):
        assert_problem(await api.client.get(path), 401, "unauthorized")
        assert (await api.client.get(path, headers=api.auth("read"))).status_code == 200
        assert (await api.client.get(path, headers=api.auth("admin"))).status_code == 200
    for scope in ("checkout", "warehouse"):
        r = await api.client.get("/v1/stock/A", headers=api.auth(scope))
        assert_problem(r, 403, "forbidden")
    r = await api.client.get("/v1/reservations/o", headers=api.auth("read"))
    assert_problem(r, 403, "forbidden")


async def test_unknown_route_and_method(api: Api) -> None:
    assert_problem(await api.client.get("/v1/nothing-here"), 404, "not_found")
    wrong = await api.client.delete("/v1/inbound", headers=api.auth("admin"))

    assert_problem(wrong, 405, "not_found")  # the closed list of codes has none for 405
    assert wrong.headers["allow"] == "POST"


async def test_malformed_json_and_wrong_content_type(api: Api) -> None:
    wh = {**api.auth("warehouse"), "content-type": "application/json"}
    broken = await api.client.post("/v1/inbound", content=b'{"ref": ', headers=wh)
    text = await api.client.post(
        "/v1/inbound",
        content=b"ref=a",
        headers={**api.auth("warehouse"), "content-type": "application/x-www-form-urlencoded"},
    )
    untyped = await api.client.post(
        "/v1/inbound", content=b'{"ref": "a"}', headers={**api.auth("warehouse")}
    )
    problem_json = await api.client.post(
        "/v1/inbound",
        content=b'{"ref": "a", "sku": "A", "location": "north", "qty": 1}',
        headers={**api.auth("warehouse"), "content-type": "application/merge-patch+json"},
    )

    assert assert_problem(broken, 422, "validation_error")["field"] == "body"
    assert_problem(text, 415, "unsupported_media_type")
    assert_problem(untyped, 415, "unsupported_media_type")
    assert problem_json.status_code == 200  # any application/*+json is JSON


async def test_bodies_over_the_limit_are_413_declared_or_chunked(api: Api) -> None:
    wh = {**api.auth("warehouse"), "content-type": "application/json"}
    big = b'{"ref": "' + b"x" * 1_048_576 + b'"}'

    declared = await api.client.post("/v1/inbound", content=big, headers=wh)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 65_536):
            yield big[i : i + 65_536]

    chunked = await api.client.post("/v1/inbound", content=chunks(), headers=wh)
    small_chunked = await api.client.post(
        "/v1/inbound",
        content=_once(b'{"ref": "c", "sku": "A", "location": "north", "qty": 1}'),
        headers=wh,
    )

    assert_problem(declared, 413, "payload_too_large")
    assert_problem(chunked, 413, "payload_too_large")
    assert small_chunked.status_code == 200


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


INBOUND = {"ref": "r", "sku": "A", "location": "north", "qty": 1}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("qty", 1.5),
        ("qty", "3"),
        ("qty", True),
        ("qty", 0),
        ("qty", -1),
        ("qty", 1_000_001),
        ("qty", None),
        ("sku", "a" * 65),
        ("sku", "bad sku"),
        ("sku", ""),
        ("sku", 7),
        ("location", "nörth"),
        ("ref", None),
        ("extra", 1),
    ],
)
async def test_bad_movement_input_is_422_and_changes_nothing(
    api: Api, field: str, value: Any
) -> None:
    r = await api.client.post(
        "/v1/inbound", json={**INBOUND, field: value}, headers=api.auth("warehouse")
    )

    body = assert_problem(r, 422, "validation_error")
    assert body["field"] == field or body["field"].startswith(field)
    assert body["errors"] and body["errors"][0]["field"] == body["field"]
    assert await api.engine.client.keys(f"{api.engine.keys.prefix}:*:s:*") == []


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": "o", "lines": []},
        {"order_id": "o", "lines": [{"sku": "A", "qty": 1}] * 101},
        {"order_id": "o", "lines": [{"sku": "A", "qty": 1, "colour": "red"}]},
        {"order_id": "o", "lines": [{"sku": "A", "qty": 1}], "ttl_seconds": 0},
        {"order_id": "o", "lines": [{"sku": "A", "qty": 1}], "ttl_seconds": "60"},
        {"order_id": "o" * 65, "lines": [{"sku": "A", "qty": 1}]},
        {"order_id": "o", "lines": [{"sku": "A", "qty": 600_000}] * 2},
        {"lines": [{"sku": "A", "qty": 1}]},
        ["not", "an", "object"],
    ],
)
async def test_bad_reservations_are_422_and_lock_nothing(api: Api, body: Any) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)

    r = await api.client.post("/v1/reservations", json=body, headers=api.auth("checkout"))

    assert_problem(r, 422, "validation_error")
    assert (await api.engine.stock("A")).locations["north"].locked == 0


async def test_bad_path_and_query_identifiers_are_422(api: Api) -> None:
    read, co = api.auth("read"), api.auth("checkout")
    for r in (
        await api.client.get("/v1/availability/" + "a" * 65, headers=read),
        await api.client.get("/v1/availability/a%20b", headers=read),
        await api.client.get("/v1/availability?sku=a%20b", headers=read),
        await api.client.get("/v1/stock/" + "a" * 65, headers=read),
        await api.client.post("/v1/reservations/bad%24id/cancel", headers=co),
        await api.client.get("/v1/movements?limit=1.5", headers=read),
    ):
        assert_problem(r, 422, "validation_error")


@pytest.fixture
def unreachable_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def unreachable_database() -> Iterator[Any]:
    db = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    yield db
    db.dispose()


async def test_unreachable_redis_is_503_not_ready(
    api_database: Database, unreachable_redis_url: str, prefix: str
) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(unreachable_redis_url)
    settings = make_settings(prefix, redis_url=unreachable_redis_url)
    app = create_app(settings, engine=StockEngine(client, settings), database=api_database.engine)
    headers = {"Authorization": f"Bearer {api_database.keys['admin']}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            read = await c.get("/v1/availability/A", headers=headers)
            write = await c.post("/v1/inbound", json=INBOUND, headers=headers)
            keyed = await c.post(
                "/v1/inbound", json=INBOUND, headers={**headers, "Idempotency-Key": "k1"}
            )
            ready = await c.get("/readyz")
    await client.aclose()

    for r in (read, write, keyed, ready):
        assert_problem(r, 503, "not_ready")


async def test_unreachable_postgres_degrades_readiness_and_refuses_only_its_routes(
    real_redis: Any, sync_redis: Any, prefix: str, unreachable_database: Any
) -> None:
    settings = make_settings(prefix)
    engine = StockEngine(real_redis, settings)
    await engine.mark_ready()
    mirrored = "invk_" + "m" * 43
    stored = StoredKey("key_m", "m", hash_key(mirrored), frozenset({"admin"}))
    mirror_keys(sync_redis, engine.keys, [stored])
    app = create_app(settings, engine=engine, database=unreachable_database)
    known = {"Authorization": f"Bearer {mirrored}"}
    unknown = {"Authorization": "Bearer invk_" + "y" * 43}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            write = await c.post("/v1/inbound", json=INBOUND, headers=known)
            read = await c.get("/v1/availability/A", headers=known)
            movements = await c.get("/v1/movements", headers=known)
            stranger = await c.post(
                "/v1/inbound", json=INBOUND, headers={**unknown, "Idempotency-Key": "k1"}
            )
            ready = await c.get("/readyz")

    assert write.status_code == 200 and read.json()["available"] == 1
    body = assert_problem(movements, 503, "not_ready")
    assert "PostgreSQL" in body["detail"]
    # A key the mirror lacks cannot be checked without PostgreSQL: 503, not a misleading 401.
    assert "PostgreSQL" in assert_problem(stranger, 503, "not_ready")["detail"]
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "degraded",
        "redis": True,
        "postgres": False,
        "detail": POSTGRES_AWAY,
    }
