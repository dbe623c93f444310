"""`GET /v1/events` over real HTTP (uvicorn in this process), on real Redis and PostgreSQL.

An in-memory ASGI transport would buffer the endless response, so these tests talk to a
real server: what a dashboard sees, including a disconnect and a resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from inventory_cache.api.livefeed import Feed
from inventory_cache.api.routes.events import EventStream, _messages
from inventory_cache.engine import StockEngine
from inventory_cache.feed import FeedHub, Filter
from tests.support.api import Database, start_api
from tests.support.feed import WAIT_S, Server, listening
from tests.support.ports import free_port


@pytest.fixture
async def server(real_redis: Any, prefix: str, api_database: Database) -> AsyncIterator[Server]:
    app, engine = await start_api(real_redis, prefix, api_database)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    for _ in range(1000):  # uvicorn signals nothing but this flag
        if uv.started:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("uvicorn did not start")
    app.state.services.feed = Feed(
        FeedHub(engine.client, engine.keys, block_ms=200), keepalive_seconds=30
    )
    try:
        yield Server(f"http://127.0.0.1:{port}", engine, api_database.keys)
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 10)


async def post(client: httpx.AsyncClient, srv: Server, path: str, body: Any, scope: str) -> None:
    r = await client.post(path, json=body, headers=srv.auth(scope))
    assert r.status_code in (200, 201), r.text


async def test_a_reservation_is_seen_with_its_content_and_in_order(server: Server) -> None:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as c,
        listening(c, server) as sse,
    ):
        inbound = {"ref": "po-1", "sku": "phone-A", "location": "north", "qty": 10}
        await post(c, server, "/v1/inbound", inbound, "warehouse")
        order = {"order_id": "o-1", "lines": [{"sku": "phone-A", "qty": 3}]}
        await post(c, server, "/v1/reservations", order, "checkout")

        first, second = await sse.change(), await sse.change()

    assert first["type"] == "inbound" and first["ref"] == "po-1"
    assert second["type"] == "reserve"
    assert second["order_id"] == "o-1"
    assert second["status"] == "active"
    assert second["lines"] == [{"sku": "phone-A", "location": "north", "qty": 3}]
    assert [(r["sku"], r["location"], r["locked"], r["available"]) for r in second["rows"]] == [
        ("phone-A", "north", 3, 7)
    ]
    assert tuple(map(int, first["id"].split("-"))) < tuple(map(int, second["id"].split("-")))


async def test_after_a_disconnect_it_resumes_from_last_event_id_without_gap_or_repeat(
    server: Server,
) -> None:
    skus = [f"s{i}" for i in range(5)]
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as c:
        async with listening(c, server) as sse:
            for s in skus:
                await post(
                    c,
                    server,
                    "/v1/inbound",
                    {"ref": "a", "sku": s, "location": "north", "qty": 1},
                    "warehouse",
                )
            before = [await sse.change() for _ in range(2)]
            last_id = sse.last_id
        assert last_id == before[-1]["id"]
        # Changes while nobody listens.
        await post(
            c,
            server,
            "/v1/reservations",
            {"order_id": "o-9", "lines": [{"sku": "s0", "qty": 1}]},
            "checkout",
        )

        assert last_id is not None
        async with listening(c, server, headers={"Last-Event-ID": last_id}) as sse:
            missed = [await sse.change() for _ in range(4)]
            await post(
                c,
                server,
                "/v1/inbound",
                {"ref": "b", "sku": "s1", "location": "north", "qty": 1},
                "warehouse",
            )
            live = await sse.change()

    seen = before + missed
    assert len({m["id"] for m in seen}) == 6
    assert sorted((m["type"], m["ref"], m["rows"][0]["sku"]) for m in seen) == sorted(
        [("inbound", "a", s) for s in skus] + [("reserve", "o-9", "s0")]
    )
    assert (live["type"], live["ref"]) == ("inbound", "b")  # nothing else was in between


async def test_filters_keep_only_the_rows_asked_for(server: Server) -> None:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as c,
        listening(c, server, params={"sku": ["B"], "location": "south"}) as sse,
    ):
        for sku, loc in (("A", "south"), ("B", "north"), ("B", "south")):
            await post(
                c,
                server,
                "/v1/inbound",
                {"ref": f"r-{loc}", "sku": sku, "location": loc, "qty": 2},
                "warehouse",
            )

        change = await sse.change()

    assert [(r["sku"], r["location"]) for r in change["rows"]] == [("B", "south")]


@pytest.mark.parametrize(
    ("scope", "params", "headers", "status", "code"),
    [
        (None, {}, {}, 401, "unauthorized"),
        ("checkout", {}, {}, 403, "forbidden"),
        ("read", {}, {"Last-Event-ID": "yesterday"}, 422, "validation_error"),
        ("read", {"last_event_id": "1-2"}, {}, 422, "validation_error"),
        ("read", {"sku": "a b"}, {}, 422, "validation_error"),
    ],
)
async def test_refusals_are_problems(
    server: Server,
    scope: str | None,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    auth = server.auth(scope, **headers) if scope else headers
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S) as c:
        r = await c.get("/v1/events", params=params, headers=auth)

    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_a_client_that_stops_reading_is_closed_and_unsubscribed(
    real_redis: Any, prefix: str
) -> None:
    from tests.support.services import make_settings

    engine = StockEngine(real_redis, make_settings(prefix))
    await engine.mark_ready()
    feed = Feed(FeedHub(engine.client, engine.keys, block_ms=100), keepalive_seconds=0.05)
    response = EventStream(_messages(feed, Filter(), None), send_timeout=0.3)
    sent: list[dict[str, Any]] = []
    stuck = asyncio.Event()

    async def send(message: Any) -> None:
        if len(sent) >= 3:  # the client's buffers are full: this write never completes
            await stuck.wait()
        sent.append(message)

    await asyncio.wait_for(response.stream_response(send), WAIT_S)

    assert response.stalled
    assert len(sent) == 3  # start, the first id, one keep-alive
    assert feed.hub.subscribers == 0 and not feed.hub.running
