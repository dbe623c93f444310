"""The batcher's direct pipeline path must answer exactly as redis-py's own pipeline does.

On a plain `redis.asyncio.Redis` the batcher packs a pipeline itself and reads the replies
(a third of redis-py's CPU for the packing, which dominated the engine's per-call cost);
fakeredis and Redis Cluster keep redis-py's pipeline. These tests hold the direct path to
redis-py's: the same bytes on the wire, the same replies, errors and callbacks, and a lost
connection reported to every caller and replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError, DataError, NoScriptError, ResponseError

from inventory_cache.batcher import Batcher, pack
from inventory_cache.scripts import Command, load_scripts
from tests.support.services import REDIS_URL

SCRIPT = load_scripts()["check_ready"]

COMMANDS: list[Command] = [
    (SCRIPT, (SCRIPT.sha, 1, "k:{1}:ready")),
    (None, ("HGETALL", "k:h")),
    (None, ("EXISTS", "k:h", b"k:missing")),
    (None, ("SCRIPT EXISTS", SCRIPT.sha)),
    (None, ("HSET", "k:h", "é", 1.5, "n", 10**12)),
    (None, ("ZRANGEBYSCORE", "k:z", "-inf", 5, "LIMIT", 0, 10)),
]


def test_pack_writes_the_bytes_redis_py_writes() -> None:
    conn = Connection()
    expected = b"".join(
        conn.pack_commands(
            [("EVALSHA", *args) if script is not None else args for script, args in COMMANDS]
        )
    )

    assert pack(COMMANDS, conn.encoder) == expected


@pytest.mark.parametrize("arg", [True, None, bytearray(b"x")])
def test_pack_refuses_what_redis_py_refuses(arg: Any) -> None:
    conn = Connection()
    with pytest.raises(DataError):
        conn.pack_commands([("SET", "k", arg)])

    with pytest.raises(DataError):
        pack([(None, ("SET", "k", arg))], conn.encoder)


async def test_a_pipeline_leaves_once_flush_at_calls_wait(real_redis: Any, prefix: str) -> None:
    batcher = Batcher(real_redis, max_inflight=2, flush_at=3)
    sizes: list[int] = []
    execute = batcher._execute

    async def spy(cmds: list[Command]) -> list[Any]:
        sizes.append(len(cmds))
        return await execute(cmds)

    batcher._execute = spy  # type: ignore[method-assign]

    replies = await batcher.many([(None, ("INCR", f"{prefix}:n")) for _ in range(7)])

    # two full pipelines leave while the calls are queued; the seventh waits for a slot
    assert sizes == [3, 3, 1]
    assert sorted(replies) == [1, 2, 3, 4, 5, 6, 7]  # pipelines on two connections


async def _via_redis_py_pipeline(client: Any, cmds: list[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for script, args in cmds:
        pipe.execute_command(*(("EVALSHA", *args) if script is not None else args))
    return list(await pipe.execute(raise_on_error=False))


def _comparable(replies: list[Any]) -> list[Any]:
    """Errors by type and Redis's own message (redis-py's pipeline prefixes its own)."""
    return [
        (type(r).__name__, str(r).rsplit("caused error: ", 1)[-1].strip("(),'\""))
        if isinstance(r, Exception)
        else r
        for r in replies
    ]


@pytest.fixture
async def own_redis(private_redis: tuple[str, Any]) -> AsyncIterator[Any]:
    """For the tests that flush the script cache: on the shared server, any other test
    running meanwhile would reload the script (or lose its own)."""
    client = aredis.Redis.from_url(private_redis[0])
    yield client
    await client.aclose()


async def test_direct_path_answers_as_redis_py_pipeline(own_redis: Any, prefix: str) -> None:
    await own_redis.script_flush()  # the script is missing: a NOSCRIPT error reply
    await own_redis.hset(f"{prefix}:h", mapping={"a": "1", "b": "2"})
    await own_redis.zadd(f"{prefix}:z", {"x": 1, "y": 9})
    await own_redis.set(f"{prefix}:s", "v")
    cmds: list[Command] = [
        (SCRIPT, (SCRIPT.sha, 1, f"{prefix}:{{1}}:ready")),
        (None, ("HGETALL", f"{prefix}:h")),
        (None, ("HGETALL", f"{prefix}:missing")),
        (None, ("EXISTS", f"{prefix}:h", f"{prefix}:missing")),
        (None, ("ZRANGEBYSCORE", f"{prefix}:z", "-inf", 5)),
        (None, ("HGET", f"{prefix}:s", "f")),  # WRONGTYPE
        (None, ("GET", f"{prefix}:s")),
    ]
    batcher = Batcher(own_redis)

    direct = await batcher._execute_direct(cmds)
    reference = await _via_redis_py_pipeline(own_redis, cmds)

    assert _comparable(direct) == _comparable(reference)
    assert isinstance(direct[0], NoScriptError) and isinstance(direct[5], ResponseError)
    assert direct[1] == {b"a": b"1", b"b": b"2"}  # HGETALL's callback made it a dict


async def test_lost_connection_reaches_every_caller_and_is_replaced(
    real_redis: Any, prefix: str
) -> None:
    client = aredis.Redis.from_url(REDIS_URL)
    try:
        batcher = Batcher(client, max_inflight=1)
        conn_id = await batcher.command("CLIENT", "ID")  # the pool's only connection so far
        # One pipeline: a call that blocks for up to 5 s, and two behind it.
        calls = asyncio.gather(
            batcher.command("BLPOP", f"{prefix}:nothing", 5),
            batcher.command("PING"),
            batcher.command("PING"),
            return_exceptions=True,
        )
        await asyncio.sleep(0.2)
        await real_redis.client_kill_filter(_id=conn_id)

        lost = await asyncio.wait_for(calls, 3)

        assert [type(r) for r in lost] == [ConnectionError] * 3
        assert await batcher.command("PING") is True  # on a new connection
        assert await batcher.command("CLIENT", "ID") != conn_id
    finally:
        await client.aclose()


async def test_a_kept_connection_closed_by_the_server_is_replaced_unnoticed(
    real_redis: Any,
) -> None:
    client = aredis.Redis.from_url(REDIS_URL)
    try:
        batcher = Batcher(client, max_inflight=1)
        conn_id = await batcher.command("CLIENT", "ID")  # kept for the next pipeline
        await real_redis.client_kill_filter(_id=conn_id)  # as a Redis restart would
        await asyncio.sleep(0.1)

        assert await batcher.command("PING") is True  # no caller sees the dead socket
        assert await batcher.command("CLIENT", "ID") != conn_id
    finally:
        await client.aclose()


async def test_noscript_after_the_reload_is_sent_again_not_reported(
    own_redis: Any, prefix: str
) -> None:
    batcher = Batcher(own_redis)
    execute = batcher._execute
    refusals = 2  # the script cache emptied again right after each reload

    async def flushing(cmds: list[Command]) -> list[Any]:
        nonlocal refusals
        if refusals:
            refusals -= 1
            await own_redis.script_flush()
        return await execute(cmds)

    batcher._execute = flushing  # type: ignore[method-assign]

    reply = await batcher.submit((SCRIPT, (SCRIPT.sha, 1, f"{prefix}:{{1}}:ready")))

    assert refusals == 0
    assert orjson.loads(reply) == {"err": "not_ready"}  # it ran: the marker is absent
