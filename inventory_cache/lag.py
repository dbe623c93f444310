"""How far the write-behind worker is behind, measured from the event streams themselves.

The lag of a stream is what its `ledger` consumer group has not acknowledged: entries
delivered but pending (`XINFO GROUPS` `pending`) plus entries not delivered yet (`lag`),
and its age is that of the oldest of them (the first pending id from `XPENDING`, or the
first id after `last-delivered-id`). Measured this way the figure rises while PostgreSQL
is down, whoever runs the worker and whether it runs at all: it does not depend on the
worker reporting itself. The API (`api/status.py`, with `measure`) and the worker
(`Worker.inspect`, with the same computation on its own pipeline) export it as one pair of
gauges (`LagGauges`): `inventory_worker_lag_entries` and `inventory_worker_lag_seconds`.
A stream without the group (no worker has started yet) counts as no lag.

`backlog` and `unwritten` count the same entries the cautious way, for the tools that
wait until nothing is left (`verify`, `warmup`): a stream without the group counts whole.
The arithmetic of both lives with the rest of the stream contract (`persistence.events`);
this module asks Redis for its inputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from redis.exceptions import ResponseError

from inventory_cache.keys import Keys
from persistence.events import Lag, group_info, lag_reads, stream_backlog, stream_lag, total_lag

if TYPE_CHECKING:
    from inventory_cache.engine import StockEngine

__all__ = ["GROUP", "Lag", "LagGauges", "backlog", "measure", "unwritten"]

GROUP = "ledger"


class LagGauges:
    """The lag's two gauges, defined once: the worker exports them in its process's
    registry, each API app in its own, under the same names."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.entries = Gauge(
            "inventory_worker_lag_entries",
            "Stream entries not yet acknowledged by the ledger group (pending + undelivered).",
            registry=registry,
        )
        self.seconds = Gauge(
            "inventory_worker_lag_seconds",
            "Age of the oldest stream entry not yet acknowledged by the ledger group.",
            registry=registry,
        )

    def set(self, lag: Lag) -> None:
        self.entries.set(lag.entries)
        self.seconds.set(lag.seconds)


async def measure(engine: StockEngine, group: str = GROUP) -> Lag:
    """The lag over every group's stream: one pipelined round of `XINFO GROUPS`, then one
    of `XPENDING` / `XRANGE` for the streams that have something outstanding."""
    streams = [engine.keys.events(g) for g in engine.keys.all_groups()]
    infos = await engine.batcher.many([(None, ("XINFO", "GROUPS", s)) for s in streams])
    found: list[dict[str, Any]] = []
    asks: list[tuple[None, tuple[Any, ...]]] = []
    where: list[tuple[int, str]] = []  # (index in found, command) per ask
    for stream, reply in zip(streams, infos, strict=True):
        if isinstance(reply, ResponseError):  # no such stream yet: nothing to lag behind
            continue
        if isinstance(reply, BaseException):
            raise reply
        info = group_info(reply, group)
        if info is None:
            continue
        for command in lag_reads(stream, info, group):
            asks.append((None, command))
            where.append((len(found), command[0]))
        found.append(info)
    now_ms = int(time.time() * 1000)
    answers = await engine.batcher.many(asks) if asks else []
    replies: list[dict[str, Any]] = [{} for _ in found]
    for (i, kind), reply in zip(where, answers, strict=True):
        if isinstance(reply, BaseException):
            raise reply
        replies[i][kind] = reply
    return total_lag(
        (
            stream_lag(info, got.get("XPENDING"), got.get("XRANGE"))
            for info, got in zip(found, replies, strict=True)
        ),
        now_ms,
    )


def unwritten(redis: Any, keys: Keys, groups: Sequence[int], group: str = GROUP) -> dict[int, int]:
    """Entries of each slot group's stream that the ledger group has not acknowledged yet
    (pending + unread; a stream it has not read yet counts whole); groups with none are
    left out. Sync client: `verify`, `warmup`."""
    pipe = redis.pipeline(transaction=False)
    for g in groups:
        pipe.xinfo_groups(keys.events(g))
        pipe.xlen(keys.events(g))
    replies = pipe.execute(raise_on_error=False)
    out: dict[int, int] = {}
    for i, g in enumerate(groups):
        if left := stream_backlog(replies[2 * i], replies[2 * i + 1], group):
            out[g] = left
    return out


def backlog(redis: Any, keys: Keys, group: str = GROUP) -> int:
    """Entries of every stream that the ledger group has not acknowledged (`unwritten`)."""
    return sum(unwritten(redis, keys, list(keys.all_groups()), group).values())
