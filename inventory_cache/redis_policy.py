"""Redis must never evict this service's keys; it is told so by `maxmemory-policy`.

Any policy but `noeviction` lets Redis delete keys when memory is full: with `volatile-*`
the order indexes and finished records (they carry an expiry), with `allkeys-*` stock
itself. An evicted index makes an active reservation answer 404 while its units stay
locked, and nothing would say so. Under `noeviction` a full Redis refuses writes instead,
which the service answers with 503 `not_ready` naming Redis memory (see `batcher.py`),
while reads go on. So `serve`, `worker`, `scheduler`, `warmup` and `/readyz` read the
policy with `CONFIG GET` and refuse any other, in one line naming the setting and the
value to use.

Managed Redis offerings may disable or rename `CONFIG`: then the policy cannot be read,
a warning says so once, and the process goes on; the operator must set the policy in the
provider's console. The embedded fakeredis (demo) has no eviction and is not asked.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inventory_cache.scripts import is_fakeredis

SETTING = "maxmemory-policy"
SAFE = "noeviction"
log = logging.getLogger(__name__)


class EvictionPolicyRefused(Exception):
    """Redis may evict the service's keys; the message is the one line to show."""


def refusal(policy: str) -> str | None:
    """The line refusing `policy`, or None when it is safe."""
    if policy == SAFE:
        return None
    return (
        f"Redis {SETTING} is {policy!r}, which lets Redis evict this service's keys "
        f"(reservations, stock) when memory is full: set {SETTING} {SAFE}"
    )


def _policies(reply: Any) -> list[str]:
    """Every node's policy: a plain client answers one mapping, a cluster one per node."""
    if not isinstance(reply, dict):
        return []
    out: list[str] = []
    for name, value in reply.items():
        if isinstance(value, dict):
            out.extend(_policies(value))
        elif (name.decode() if isinstance(name, bytes) else str(name)) == SETTING:
            out.append(value.decode() if isinstance(value, bytes) else str(value))
    return out


def _cluster(client: Any) -> bool:
    return type(client).__name__ == "RedisCluster"


def _verdict(reply: Any) -> str | None:
    for policy in _policies(reply):
        if line := refusal(policy):
            return line
    return None


def _unreadable(exc: Exception) -> None:
    log.warning(
        "cannot read Redis %s (%s): make sure it is %s, or full memory may evict keys",
        SETTING,
        exc,
        SAFE,
    )


async def policy_refusal(client: Any) -> str | None:
    """The refusal line for the policy of the Redis behind an asyncio `client`, or None
    when it is safe, cannot be read (CONFIG disabled: warned) or Redis is unreachable
    (the caller's own readiness check reports that)."""
    if is_fakeredis(client):
        return None
    kwargs = {"target_nodes": "all"} if _cluster(client) else {}
    try:
        reply = await client.config_get(SETTING, **kwargs)
    except (RedisConnectionError, RedisTimeoutError):
        return None
    except ResponseError as exc:
        _unreadable(exc)
        return None
    return _verdict(reply)


def policy_refusal_sync(client: Any) -> str | None:
    """`policy_refusal` for a blocking client (worker, warmup, the CLI)."""
    if is_fakeredis(client):
        return None
    kwargs = {"target_nodes": "all"} if _cluster(client) else {}
    try:
        reply = client.config_get(SETTING, **kwargs)
    except (RedisConnectionError, RedisTimeoutError):
        return None
    except ResponseError as exc:
        _unreadable(exc)
        return None
    return _verdict(reply)


def require_safe_policy(client: Any) -> None:
    """Raise `EvictionPolicyRefused` when Redis may evict the service's keys."""
    if line := policy_refusal_sync(client):
        raise EvictionPolicyRefused(line)


def exit_if_unsafe() -> None:
    """Start-up check of a command: the refusal on standard error, one line, exit 2."""
    import sys

    from inventory_cache.connection import make_sync_redis
    from inventory_cache.settings import get_settings

    settings = get_settings()
    if settings.redis_url is None:
        return
    client = make_sync_redis(settings)
    try:
        line = policy_refusal_sync(client)
    finally:
        client.close()
    if line:
        print(line, file=sys.stderr)
        raise SystemExit(2)
