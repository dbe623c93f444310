"""Talking to `GET /v1/events` over real HTTP: the server under test as the feed tests
see it, a minimal EventSource, and a subscribed connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from inventory_cache.engine import StockEngine

WAIT_S = 5.0


@dataclass
class Server:
    url: str
    engine: StockEngine
    keys: dict[str, str]

    def auth(self, scope: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}", **extra}


@dataclass
class Message:
    id: str | None = None
    data: dict[str, Any] | None = None
    comments: list[str] = field(default_factory=list)


class SseClient:
    """A minimal EventSource: parses the stream into messages (comments kept)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.last_id: str | None = None

    async def message(self) -> Message:
        async def read() -> Message:
            msg = Message()
            async for line in self.lines:
                if line == "":
                    if msg.id is not None:
                        self.last_id = msg.id
                    return msg
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    msg.comments.append(value)
                elif name == "id":
                    msg.id = value
                elif name == "data":
                    msg.data = orjson.loads(value)
            raise AssertionError("stream ended")

        return await asyncio.wait_for(read(), WAIT_S)

    async def change(self) -> dict[str, Any]:
        while True:
            msg = await self.message()
            if msg.data is not None:
                assert msg.data["id"] == msg.id
                return msg.data


@contextlib.asynccontextmanager
async def listening(
    client: httpx.AsyncClient,
    srv: Server,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[SseClient]:
    """Connected and subscribed: the server's first message (an id, no data) is read."""
    async with client.stream(
        "GET", "/v1/events", params=params, headers=srv.auth("read", **(headers or {}))
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        sse = SseClient(r)
        first = await sse.message()
        assert first.id is not None and first.data is None
        yield sse
