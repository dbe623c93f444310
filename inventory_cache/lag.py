"""How far the write-behind worker is behind, measured from the event streams themselves.

The lag of a stream is what its `ledger` consumer group has not acknowledged: entries
delivered but pending (`XINFO GROUPS` `pending`) plus entries not delivered yet (`lag`),
and its age is that of the oldest of them (the first pending id from `XPENDING`, or the
first id after `last-delivered-id`). Measured this way the figure rises while PostgreSQL
is down, whoever runs the worker and whether it runs at all: it does not depend on the
worker reporting itself. The API (`api/status.py`) and the worker (`Worker.inspect`)
export it under one name: `inventory_worker_lag_entries` and `inventory_worker_lag_seconds`.
A stream without the group (no worker has started yet) counts as no lag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from inventory_cache.engine import StockEngine

GROUP = "ledger"


@dataclass(frozen=True, slots=True)
class Lag:
    entries: int
    seconds: float


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def group_fields(groups: Any, name: str) -> dict[str, Any] | None:
    """One group's `XINFO GROUPS` entry, whether the reply is parsed (a list of maps) or
    raw (flat name/value lists, RESP2); None when the stream has no such group."""
    for info in groups or []:
        pairs = info.items() if isinstance(info, dict) else zip(info[::2], info[1::2], strict=True)
        fields = {text(k): v for k, v in pairs}
        if text(fields.get("name", "")) == name:
            return fields
    return None


def entries_of(fields: dict[str, Any], *, undelivered_seen: bool) -> int:
    """Pending plus undelivered; `lag` is unknown (nil) after deletions in the stream,
    then the undelivered count as one if an entry follows the last delivered id."""
    lag = fields.get("lag")
    return int(fields["pending"]) + (int(lag) if lag is not None else int(undelivered_seen))


def _first_pending(reply: Any) -> str | None:
    """The oldest pending id of an `XPENDING` summary, parsed (a map) or raw (a list)."""
    first = reply.get("min") if isinstance(reply, dict) else reply[1]
    return None if first is None else text(first)


async def measure(engine: StockEngine, group: str = GROUP) -> Lag:
    """The lag over every group's stream: one pipelined round of `XINFO GROUPS`, then one
    of `XPENDING` / `XRANGE` for the streams that have something outstanding."""
    streams = [engine.keys.events(g) for g in engine.keys.all_groups()]
    infos = await engine.batcher.many([(None, ("XINFO", "GROUPS", s)) for s in streams])
    found: list[dict[str, Any]] = []
    asks: list[tuple[None, tuple[Any, ...]]] = []
    where: list[tuple[int, str]] = []  # (index in found, "pending" or "next") per ask
    for stream, reply in zip(streams, infos, strict=True):
        if isinstance(reply, ResponseError):  # no such stream yet: nothing to lag behind
            continue
        if isinstance(reply, BaseException):
            raise reply
        fields = group_fields(reply, group)
        if fields is None:
            continue
        found.append(fields)
        if int(fields["pending"]):
            asks.append((None, ("XPENDING", stream, group)))
            where.append((len(found) - 1, "pending"))
        if fields.get("lag") != 0:
            last = text(fields["last-delivered-id"])
            asks.append((None, ("XRANGE", stream, "(" + last, "+", "COUNT", 1)))
            where.append((len(found) - 1, "next"))
    now_ms = int(time.time() * 1000)
    answers = await engine.batcher.many(asks) if asks else []
    oldest = now_ms
    undelivered: set[int] = set()
    for (i, kind), reply in zip(where, answers, strict=True):
        if isinstance(reply, BaseException):
            raise reply
        if kind == "pending" and (first := _first_pending(reply)) is not None:
            oldest = min(oldest, id_ms(first))
        elif kind == "next" and reply:
            undelivered.add(i)
            oldest = min(oldest, id_ms(text(reply[0][0])))
    total = sum(entries_of(f, undelivered_seen=i in undelivered) for i, f in enumerate(found))
    return Lag(total, max(0.0, (now_ms - oldest) / 1000) if total else 0.0)
