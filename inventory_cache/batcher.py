"""Coalesces concurrent Redis calls into pipelines.

One asyncio process spends a whole core driving a quarter of Redis when every call is its
own round trip (PERF.md): the client, not Redis, is the ceiling. So every engine call is
queued, and whatever accumulated while the previous pipelines were in flight is sent as
one pipeline (like ioredis's auto-pipelining). A script missing from the server's cache
(NOSCRIPT after a restart or failover) is loaded and only the refused calls are re-sent:
NOSCRIPT means the script did not run, so the retry cannot apply anything twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from inventory_cache.scripts import Script

Command = tuple[Script | None, tuple[Any, ...]]

MAX_BATCH = 512


class Batcher:
    def __init__(self, client: Any, max_inflight: int = 4) -> None:
        self._client = client
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._slots = asyncio.Semaphore(max_inflight)
        self._runner: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script.check_keys(keys)
        return await self._enqueue((script, (script.sha, len(keys), *keys, *args)))

    async def command(self, *args: Any) -> Any:
        return await self._enqueue((None, args))

    async def many(self, commands: Sequence[Command]) -> list[Any]:
        """Queue several calls at once; each result or exception in order."""
        futs = [self._enqueue(c) for c in commands]
        return list(await asyncio.gather(*futs, return_exceptions=True))

    def _enqueue(self, cmd: Command) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((cmd, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return fut

    async def _run(self) -> None:
        while self._queue:
            await self._slots.acquire()
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            task = asyncio.create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._done)
            await asyncio.sleep(0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._execute([c for c, _ in batch])
            retry = [
                (i, cmd)
                for i, ((cmd, _), r) in enumerate(zip(batch, results, strict=True))
                if isinstance(r, NoScriptError) and cmd[0] is not None
            ]
            if retry:
                for script in {cmd[0].name: cmd[0] for _, cmd in retry if cmd[0]}.values():
                    await self._client.script_load(script.source)
                again = await self._execute([cmd for _, cmd in retry])
                for (i, _), r in zip(retry, again, strict=True):
                    results[i] = r
        except Exception as exc:  # connection lost: every caller learns it
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), r in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(r, Exception):
                fut.set_exception(r)
            else:
                fut.set_result(r)

    async def _execute(self, cmds: list[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, args in cmds:
            if script is not None:
                pipe.execute_command("EVALSHA", *args)
            else:
                pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))
