"""Runs script `Call`s (`script_calls.py`): `AsyncScripts` over the engine's batcher (the
API, the scheduler's lease), `SyncScripts` over a blocking client's pipelines (warmup).

Both resolve a call to its loaded script by name, check its key count, and decode a reply
the same way (`decode`: an `err` reply raised as its typed error); both recover from
NOSCRIPT the same way (`scripts.noscript_refused`: the refused calls did not run, so the
scripts are loaded and only those calls sent again). The batcher keeps its pipelined
EVALSHA path: an async call costs one queue entry, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from inventory_cache.batcher import Batcher
from inventory_cache.errors import InventoryError, raise_for_reply
from inventory_cache.script_calls import Call
from inventory_cache.scripts import Command, Script, noscript_refused


def decode(raw: bytes | str) -> Any:
    """A script's JSON reply; an error reply (an object with `err`) raised as its error."""
    reply = orjson.loads(raw)
    if isinstance(reply, dict):
        raise_for_reply(reply)
    return reply


def command(scripts: dict[str, Script], call: Call) -> Command:
    """The EVALSHA a call stands for, its key count checked against its script."""
    script = scripts[call.script]
    script.check_keys(call.keys)
    return (script, (script.sha, len(call.keys), *call.keys, *call.args))


class AsyncScripts:
    """Script calls over a `Batcher`: pipelined with whatever else is queued."""

    def __init__(self, batcher: Batcher, scripts: dict[str, Script]) -> None:
        self.batcher = batcher
        self.scripts = scripts

    def command(self, call: Call) -> Command:
        return command(self.scripts, call)

    async def run(self, call: Call) -> Any:
        """One call's reply; its error reply raised."""
        return decode(await self.batcher.submit(command(self.scripts, call)))

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls in one pipeline; each reply, or the exception it stands for."""
        raws = await self.batcher.many([command(self.scripts, c) for c in calls])
        out: list[Any] = []
        for raw in raws:
            if isinstance(raw, BaseException):
                out.append(raw)
                continue
            try:
                out.append(decode(raw))
            except InventoryError as exc:
                out.append(exc)
        return out


class SyncScripts:
    """Script calls over a blocking client, one pipeline per `run_many`."""

    def __init__(self, redis: Any, scripts: dict[str, Script]) -> None:
        self.redis = redis
        self.scripts = scripts

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """Every call's reply, in order; the first error raised (a transport error, or an
        error reply as its typed error)."""
        cmds = [command(self.scripts, c) for c in calls]
        results = self._send(cmds)
        missing, load = noscript_refused(cmds, results)
        if missing:
            for script in load:
                self.redis.script_load(script.source)
            for i, r in zip(missing, self._send([cmds[i] for i in missing]), strict=True):
                results[i] = r
        out = []
        for r in results:
            if isinstance(r, Exception):
                raise r
            out.append(decode(r))
        return out

    def _send(self, cmds: Sequence[Command]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for _, args in cmds:
            # The raw command: redis-py's cluster pipeline refuses its `evalsha` method but
            # routes EVALSHA by the keys it names.
            pipe.execute_command("EVALSHA", *args)
        return list(pipe.execute(raise_on_error=False))
