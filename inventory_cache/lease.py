"""A Redis lease with a fencing token: of several schedulers, only the holder acts.

Why a lease and not a lock: a scheduler that dies (or is partitioned away) stops renewing,
its lease runs out on the server, and another one takes over without anyone cleaning up.
Why a fencing token: a holder can pause (GC, a slow reconciliation) past its lease and
wake up believing it still leads. Every takeover hands out a larger token, and the one
thing that must never happen twice, starting a scheduled job run, is claimed with
`lease_claim-2.lua`, which checks the token atomically with the claim. Work that is
idempotent anyway (the expiry sweep: the order index arbitrates each reservation) only
uses the lease to avoid doing it N times over.

Keys (`Keys.lease`, hash tag `{lease}` so that a lease, its fence and its claims share one
slot): `<prefix>:{lease}:<name>` the lease, `<prefix>:{lease}:<name>:fence` the token
counter, `<prefix>:{lease}:<name>:run:<run>` the claim of one job run.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from inventory_cache import script_calls as sc
from inventory_cache.batcher import Batcher
from inventory_cache.keys import Keys
from inventory_cache.script_exec import AsyncScripts
from inventory_cache.scripts import Script, scripts_for


def default_owner() -> str:
    """host:pid:random, so two processes never share an identity, even after a pid reuse."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """One process's handle on a named lease; `token` is set while it believes it holds it."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        name: str,
        ttl_ms: int,
        owner: str | None = None,
        scripts: dict[str, Script] | None = None,
    ) -> None:
        self.owner = owner or default_owner()
        self.ttl_ms = ttl_ms
        self._keys = Keys(prefix)
        self.name = name
        self.key = self._keys.lease(name)
        self.fence_key = self._keys.lease_fence(name)
        self.token: int | None = None
        self._scripts = AsyncScripts(Batcher(client, 1), scripts or scripts_for(client))

    @property
    def held(self) -> bool:
        return self.token is not None

    async def acquire(self) -> bool:
        """Take the lease if it is free, or extend it if this process already holds it.

        Returns:
            True when this process holds the lease afterwards (`token` is its fence).
        """
        reply = await self._scripts.run(
            sc.lease_acquire(
                lease=self.key, fence=self.fence_key, owner=self.owner, ttl_ms=self.ttl_ms
            )
        )
        self.token = int(reply["token"]) if reply["held"] else None
        return self.token is not None

    async def renew(self) -> bool:
        """Extend the lease; False (and `token` cleared) when it has passed to another."""
        if self.token is None:
            return False
        reply = await self._scripts.run(
            sc.lease_renew(lease=self.key, owner=self.owner, token=self.token, ttl_ms=self.ttl_ms)
        )
        if not reply["held"]:
            self.token = None
        return self.token is not None

    async def keep(self) -> bool:
        """One heartbeat: renew while holding, otherwise try to take over."""
        if self.token is not None and await self.renew():
            return True
        return await self.acquire()

    async def release(self) -> None:
        """Hand the lease on at shutdown, so a standby takes over at its next heartbeat."""
        if self.token is not None:
            await self._scripts.run(
                sc.lease_release(lease=self.key, owner=self.owner, token=self.token)
            )
            self.token = None

    async def claim(self, run: str, *, retention_ms: int) -> bool:
        """Claim one run of a job (its scheduled time, say) under the current fence.

        Returns:
            True for exactly one claimant of `run` among all processes, and only while it
            holds the lease under the token it acquired; False for every other caller.
        """
        if self.token is None:
            return False
        reply = await self._scripts.run(
            sc.lease_claim(
                lease=self.key,
                claim=self._keys.lease_run(self.name, run),
                owner=self.owner,
                token=self.token,
                retention_ms=retention_ms,
            )
        )
        if reply.get("why") == "lost":
            self.token = None
        return bool(reply["claimed"])
