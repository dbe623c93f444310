"""The scheduler lease: one holder at a time, a dead holder's lease passes on, fenced claims."""

from __future__ import annotations

import asyncio
from typing import Any

from inventory_cache.lease import Lease


def lease(client: Any, prefix: str, owner: str, ttl_ms: int = 5_000) -> Lease:
    return Lease(client, prefix=prefix, name="scheduler", ttl_ms=ttl_ms, owner=owner)


async def test_only_one_of_two_contenders_holds_the_lease(backend: Any, prefix: str) -> None:
    a, b = lease(backend, prefix, "a"), lease(backend, prefix, "b")

    got = await asyncio.gather(a.acquire(), b.acquire())

    assert sorted(got) == [False, True]
    holder, other = (a, b) if a.held else (b, a)
    assert holder.token == 1
    assert other.token is None
    assert await holder.keep() is True
    assert await other.keep() is False


async def test_a_dead_holders_lease_passes_on_with_a_larger_token(
    backend: Any, prefix: str
) -> None:
    a, b = lease(backend, prefix, "a", ttl_ms=150), lease(backend, prefix, "b", ttl_ms=150)
    assert await a.acquire()
    assert not await b.acquire()

    await asyncio.sleep(0.3)  # a stops renewing, as if it had died

    assert await b.acquire()
    assert (a.token, b.token) == (1, 2)
    assert await a.renew() is False
    assert a.token is None


async def test_a_paused_holder_cannot_claim_a_run_after_losing_the_lease(
    backend: Any, prefix: str
) -> None:
    a, b = lease(backend, prefix, "a", ttl_ms=150), lease(backend, prefix, "b", ttl_ms=150)
    assert await a.acquire()
    await asyncio.sleep(0.3)
    assert await b.acquire()

    assert await a.claim("reconcile:2030-01-01T03:00", retention_ms=60_000) is False
    assert await b.claim("reconcile:2030-01-01T03:00", retention_ms=60_000) is True


async def test_each_run_is_claimed_once_even_across_a_handover(backend: Any, prefix: str) -> None:
    a, b = lease(backend, prefix, "a"), lease(backend, prefix, "b")
    assert await a.acquire()
    assert await a.claim("run-1", retention_ms=60_000) is True
    assert await a.claim("run-1", retention_ms=60_000) is False

    await a.release()
    assert await b.acquire()

    assert await b.claim("run-1", retention_ms=60_000) is False
    assert await b.claim("run-2", retention_ms=60_000) is True


async def test_release_hands_the_lease_on_at_once_and_only_by_its_holder(
    backend: Any, prefix: str
) -> None:
    a, b = lease(backend, prefix, "a"), lease(backend, prefix, "b")
    assert await a.acquire()
    b.token = 1  # b pretends to hold a's token under its own name

    await b.release()
    assert not await b.acquire()

    await a.release()
    assert await b.acquire()
    assert b.token == 2
