"""Reading what a test's key prefix holds in Redis, to compare before and after; and
choosing SKUs by where their keys live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inventory_cache.engine import StockEngine


async def scan_keys(client: Any, prefix: str) -> list[bytes]:
    return sorted([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)])


async def snapshot(client: Any, keys: Sequence[str | bytes]) -> dict[bytes, Any]:
    """These keys' contents (streams by length, absent keys left out), in 2 round trips."""
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
    kinds = [t.decode() if isinstance(t, bytes) else t for t in await pipe.execute()]
    present = [
        (k.encode() if isinstance(k, str) else k, kind)
        for k, kind in zip(keys, kinds, strict=True)
        if kind != "none"
    ]
    pipe = client.pipeline(transaction=False)
    for k, kind in present:
        read = {
            "hash": pipe.hgetall,
            "string": pipe.get,
            "stream": pipe.xlen,
            "zset": lambda k: pipe.zrange(k, 0, -1, withscores=True),
        }[kind]
        read(k)
    return dict(zip([k for k, _ in present], await pipe.execute(), strict=True))


async def snapshot_prefix(client: Any, prefix: str) -> dict[bytes, Any]:
    """Every key under the prefix (SCAN walks the whole database: for one-off checks)."""
    return await snapshot(client, await scan_keys(client, prefix))


async def stream_events(engine: StockEngine) -> list[dict[str, str]]:
    """Every event of every group, decoded: what the worker would write to the ledger."""
    out = []
    for g in engine.keys.all_groups():
        for _id, fields in await engine.client.xrange(engine.keys.events(g)):
            out.append({k.decode(): v.decode() for k, v in fields.items()})
    return out


def flush_prefix(client: Any, prefix: str) -> None:
    """What FLUSHALL (or a restart without persistence) looks like to this prefix (a
    synchronous client)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])


def skus_in_distinct_groups(engine: StockEngine, n: int) -> list[str]:
    """n SKUs whose stock lives in n different slot groups, by ascending group."""
    seen: dict[int, str] = {}
    i = 0
    while len(seen) < n:
        sku = f"sku-{i}"
        seen.setdefault(engine.keys.group_of(sku), sku)
        i += 1
    return [seen[g] for g in sorted(seen)]
