"""Coalesces concurrent Redis calls into pipelines.

One asyncio process spends a whole core driving a quarter of Redis when every call is its
own round trip (BENCHMARKS.md): the client, not Redis, is the ceiling. So every engine call is
queued, and whatever accumulated while the previous pipelines were in flight is sent as
one pipeline (like ioredis's auto-pipelining). A script missing from the server's cache
(NOSCRIPT after a restart or failover) is loaded and only the refused calls are re-sent:
NOSCRIPT means the script did not run, so the retry cannot apply anything twice.
It also means the server lost its script cache: it restarted, or it is another server
(a promoted replica), and may have come back behind the ledger. So `on_new_server`, when
set (the API sets the behind-the-ledger check, `behind.py`), runs first, and a group it
marks behind refuses the re-sent calls instead of running them on stale state.

On Redis Cluster a call may also come back *not run* while a slot moves or a replica takes
over: redis-py follows MOVED/ASK and retries TRYAGAIN itself, but only for about 0.4 s, then
gives up with "TTL exhausted" (a slot holding many keys takes longer to migrate, and
multi-key scripts get TRYAGAIN until it has). Those calls go back into the queue after a
growing pause, for up to `CLUSTER_PATIENCE_S`, without holding a pipeline slot meanwhile;
as with NOSCRIPT, the server refused them before running anything, so a re-send cannot
apply twice. A single Redis never answers so, and behaves as before.

A call Redis refused because its memory is over `maxmemory` (an OOM reply) comes back as
`RedisFull`, a 503 `not_ready` naming Redis memory, and is counted in `oom_refusals`: every
script declares its flags (`scripts.py`), so the refusal came before the script ran.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aredis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    ResponseError,
    TryAgainError,
)

from inventory_cache.errors import RedisFull
from inventory_cache.scripts import Command, noscript_refused

log = logging.getLogger(__name__)

MAX_BATCH = 512
# How long a call refused by a moving slot or a failover is re-sent before its caller
# sees the refusal: about what redis-cli needs to move a slot of tens of thousands of
# keys (10 keys per MIGRATE round trip), or a replica to be elected after a crash.
CLUSTER_PATIENCE_S = 10.0


def not_run(reply: object) -> bool:
    """Whether Redis Cluster refused this call before running it (see the module docstring).

    MOVED is an AskError; ClusterError itself (not a subclass) is redis-py's "TTL
    exhausted", raised only after every attempt was redirected or told TRYAGAIN.
    """
    return isinstance(reply, TryAgainError | AskError | ClusterDownError) or (
        type(reply) is ClusterError
    )


@dataclass(slots=True)
class _Call:
    cmd: Command
    fut: asyncio.Future[Any]
    refused: int = 0  # times the cluster did not run it
    first_refused_at: float = 0.0


class Batcher:
    """Queue of calls and the pipelines in flight.

    Two calls of one reservation follow each other (index, then stock), so every caller
    tends to come back at once: sending all that accumulated as one pipeline would make
    the client and Redis take turns, each idle half the time. So a pipeline leaves as soon
    as `flush_at` calls wait and a slot is free, and Redis works on it while the client
    prepares the next; what waits while every slot is busy goes in one pipeline later.
    """

    def __init__(self, client: Any, max_inflight: int = 8, flush_at: int = 8) -> None:
        self._client = client
        self._queue: list[_Call] = []
        self._free = max_inflight
        self._flush_at = flush_at
        self._slot_freed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # connections kept between pipelines (direct path)
        self.on_new_server: Callable[[], Awaitable[Any]] | None = None
        self._new_server: asyncio.Task[Any] | None = None
        self.oom_refusals = 0  # calls Redis refused for memory over maxmemory

    def submit(self, cmd: Command) -> asyncio.Future[Any]:
        """Queue one call (a script's, built by `script_exec`); its result, or the error."""
        return self._enqueue(cmd)

    async def command(self, *args: Any) -> Any:
        return await self._enqueue((None, args))

    async def many(self, commands: Sequence[Command]) -> list[Any]:
        """Queue several calls at once; each result or exception in order."""
        futs = [self._enqueue(c) for c in commands]
        if len(futs) == 1:  # the common case (one slot group), without gather's machinery
            try:
                return [await futs[0]]
            except Exception as exc:
                return [exc]
        return list(await asyncio.gather(*futs, return_exceptions=True))

    def _enqueue(self, cmd: Command) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requeue([_Call(cmd, fut)])
        return fut

    def _requeue(self, calls: list[_Call]) -> None:
        self._queue.extend(calls)
        if self._free and len(self._queue) >= self._flush_at:
            self._launch()
        elif self._queue and (self._runner is None or self._runner.done()):
            self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Sends what is left once the callers of this loop turn have queued theirs."""
        while self._queue:
            if not self._free:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._launch()
            await asyncio.sleep(0)

    def _launch(self) -> None:
        self._free -= 1
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        task = asyncio.create_task(self._send(batch))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._free += 1
        self._slot_freed.set()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            cmds = [c.cmd for c in batch]
            results = await self._execute(cmds)
            missing, load = noscript_refused(cmds, results)
            if missing:
                await self._server_changed()
                for script in load:
                    await self._client.script_load(script.source)
                again = await self._execute([cmds[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except Exception as exc:  # connection lost: every caller learns it
            for c in batch:
                if not c.fut.done():
                    c.fut.set_exception(exc)
            return
        now = time.monotonic()
        later = []
        for c, r in zip(batch, results, strict=True):
            if c.fut.done():
                continue
            if not_run(r) or (isinstance(r, NoScriptError) and c.cmd[0] is not None):
                # NOSCRIPT again after the reload (the cache was emptied meanwhile, or a
                # node without it answered): it did not run either; re-sent later, the
                # script is loaded again first.
                c.refused += 1
                c.first_refused_at = c.first_refused_at or now
                if now - c.first_refused_at < CLUSTER_PATIENCE_S:
                    later.append(c)
                    continue
            if isinstance(r, OutOfMemoryError):
                self.oom_refusals += 1
                c.fut.set_exception(RedisFull())
            elif isinstance(r, Exception):
                c.fut.set_exception(r)
            else:
                c.fut.set_result(r)
        if later:
            pause = min(0.5, 0.01 * 2 ** max(c.refused for c in later))
            asyncio.get_running_loop().call_later(pause, self._requeue, later)

    async def _server_changed(self) -> None:
        """Run `on_new_server`, one at a time: pipelines refused together share one run."""
        if self.on_new_server is None:
            return
        if self._new_server is None or self._new_server.done():
            self._new_server = asyncio.ensure_future(self.on_new_server())
        try:
            await asyncio.shield(self._new_server)
        except Exception as exc:  # serving goes on; the periodic checks remain
            log.warning("check after NOSCRIPT failed: %s", exc)

    async def _execute(self, cmds: list[Command]) -> list[Any]:
        if type(self._client) is aredis.Redis:
            return await self._execute_direct(cmds)
        pipe = self._client.pipeline(transaction=False)
        for script, args in cmds:
            if script is not None:
                pipe.execute_command("EVALSHA", *args)
            else:
                pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

    async def _execute_direct(self, cmds: list[Command]) -> list[Any]:
        """What `pipeline(transaction=False).execute(raise_on_error=False)` does on a plain
        `redis.asyncio.Redis`, for a third of the client CPU: redis-py packs every
        argument of every command one by one (a quarter of a reservation's CPU in
        `scripts/bench_engine.py`); here a pipeline is packed in one pass and sent, and
        each reply read, error kept and response callback applied as redis-py would.

        A connection whose round trip ended cleanly is kept for the next pipeline (at most
        one per slot) instead of going back to the pool, whose checkout tests the socket
        for stray bytes every time; any other ending hands it back to the pool, which
        runs that test before anyone uses it again. A kept connection that the server
        closed meanwhile (a restart, a timeout, CLIENT KILL) goes back to the pool too,
        which reconnects it, rather than failing its callers."""
        pool = self._client.connection_pool
        conn = None
        while self._idle and conn is None:
            conn = self._idle.pop()
            if not conn.is_connected or conn._reader.at_eof():
                await pool.release(conn)
                conn = None
        if conn is None:
            conn = await pool.get_connection("MULTI")
        clean = False
        try:
            replies = await conn.retry.call_with_retry(
                lambda: self._round_trip(conn, cmds, pool.get_encoder()),
                lambda error: _disconnect_raise(conn, error),
            )
            clean = True
            return list(replies)
        finally:
            if clean:
                self._idle.append(conn)
            else:
                await pool.release(conn)

    async def _round_trip(self, conn: Any, cmds: list[Command], encoder: Any) -> list[Any]:
        await conn.send_packed_command(pack(cmds, encoder))
        callbacks = self._client.response_callbacks
        evalsha = callbacks.get("EVALSHA")
        out: list[Any] = []
        for script, args in cmds:
            try:
                reply = await conn.read_response()
            except ResponseError as exc:
                out.append(exc)
                continue
            callback = evalsha if script is not None else callbacks.get(args[0])
            if callback is not None:
                reply = callback(reply)
                if inspect.isawaitable(reply):
                    reply = await reply
            out.append(reply)
        return out


async def _disconnect_raise(conn: Any, error: BaseException) -> None:
    """As redis-py's pipeline: drop the connection; retry only errors it was told to."""
    await conn.disconnect()
    if conn.retry_on_error is None or not isinstance(error, tuple(conn.retry_on_error)):
        raise error


def pack(cmds: Sequence[Command], encoder: Any) -> bytes:
    """RESP for a pipeline of commands, arguments encoded as redis-py's `Encoder` does.

    hiredis packs a command in C; a command it cannot pack (an argument of a type it does
    not know) or a client set to another encoding goes through the encoder, which also
    raises redis-py's DataError for what Redis cannot take.
    """
    fast = (
        encoder.encoding.lower().replace("-", "") == "utf8" and encoder.encoding_errors == "strict"
    )
    out: list[bytes] = []
    for script, args in cmds:
        if script is not None:
            args = (b"EVALSHA", *args)
        elif isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])  # "SCRIPT LOAD": sent as two words
        if fast:
            try:
                out.append(hiredis.pack_command(args))
                continue
            except TypeError:
                pass
        out.append(_pack_slow(args, encoder))
    return b"".join(out)


def _pack_slow(args: tuple[Any, ...], encoder: Any) -> bytes:
    charset, errors, encode = encoder.encoding, encoder.encoding_errors, encoder.encode
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            b = arg
        elif kind is str:
            b = arg.encode(charset, errors)
        elif kind is int:
            b = b"%d" % arg
        else:
            b = encode(arg)
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)
