"""Transfers between locations: an index in the transfer id's group, the record and its
steps (`transfer_request-4.lua`, `transfer_step-4.lua`) in the SKU's group."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from inventory_cache import script_calls as sc
from inventory_cache import validation as v
from inventory_cache.engine.core import EngineCore, fingerprint
from inventory_cache.errors import (
    IdempotencyMismatch,
    InvalidState,
    InventoryError,
    NotFound,
    ValidationError,
)
from inventory_cache.models import Transfer
from inventory_cache.script_calls import TransferStep

# The statuses in which a transfer step replays (`STEPS[step].after` in transferStep.lua).
_STEPS_DONE = {
    "ship": ("in_transit", "received"),
    "receive": ("received",),
    "cancel": ("cancelled",),
}


def _transfer(reply: dict[str, Any]) -> Transfer:
    return Transfer(
        transfer_id=reply["transfer_id"],
        status=reply["status"],
        sku=reply["sku"],
        from_location=reply["from_location"],
        to_location=reply["to_location"],
        qty=int(reply["qty"]),
        replayed=bool(reply.get("replayed", False)),
    )


class Transfers(EngineCore):
    """Transfers between locations."""

    def _transfer_index(self, transfer_id: str) -> tuple[str, str]:
        """The readiness marker of the transfer id's group and the transfer's index."""
        h = self.keys.group_of(transfer_id)
        return self.keys.ready(h), self.keys.transfer_index(transfer_id)

    async def request_transfer(
        self, *, transfer_id: str, sku: str, from_location: str, to_location: str, qty: int
    ) -> Transfer:
        v.ident(transfer_id, "transfer_id"), v.ident(sku, "sku"), v.qty(qty)
        v.ident(from_location, "from_location"), v.ident(to_location, "to_location")
        if from_location == to_location:
            raise ValidationError("from_location and to_location must differ", field="to_location")
        fp = fingerprint(
            {
                "transfer_id": transfer_id,
                "sku": sku,
                "from": from_location,
                "to": to_location,
                "qty": qty,
            }
        )
        ready, index = self._transfer_index(transfer_id)
        token = self._attempt_token()
        now = self.now()
        # No expires_at: the index must not expire while the transfer is open (it may be in
        # transit for longer than the retention window); receive and cancel close it. An
        # attempt that dies between the two calls below leaves an index with no transfer:
        # lookups answer not_found, and a retry with the same body completes it.
        open_index = sc.index_open(
            ready=ready,
            index=index,
            fingerprint=fp,
            token=token,
            now=now,
            expires_at="",
            body=orjson.dumps({"sku": sku}),
            retention_ms=self._finished_ms,
            stale_token="",
        )
        drop_index = sc.index_drop(ready=ready, index=index, token=token)
        opened = await self.run(open_index)
        if opened.get("new") and self.archive is not None:
            archived = await self.archive.transfer(transfer_id)
            if archived is not None:  # finished, and its keys left Redis after the window
                await self.run(drop_index)
                if archived[1] != fp:
                    raise IdempotencyMismatch()
                return replace(archived[0], replayed=True)
        g = self.keys.group_of(sku)
        request = sc.transfer_request(
            ready=self.keys.ready(g),
            transfer=self.keys.transfer(sku, transfer_id),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            transfer_id=transfer_id,
            fingerprint=fp,
            sku=sku,
            from_location=from_location,
            to_location=to_location,
            qty=qty,
            now=now,
        )
        try:
            reply = await self.run(request)
        except InventoryError:
            if opened.get("new"):
                await self.run(drop_index)
            raise
        if opened.get("dup"):
            # The first attempt may have failed and dropped the index meanwhile.
            await self.run(open_index)
        return _transfer(reply)

    async def _transfer_sku(self, transfer_id: str) -> str:
        v.ident(transfer_id, "transfer_id")
        raw = await self.batcher.command("HGET", self.keys.transfer_index(transfer_id), "body")
        if raw is None:
            raise NotFound(f"no transfer {transfer_id}")
        return str(orjson.loads(raw)["sku"])

    async def _transfer_step(self, transfer_id: str, step: TransferStep) -> Transfer:
        try:
            sku = await self._transfer_sku(transfer_id)
        except NotFound:
            return await self._stepped_before(transfer_id, step)
        now = self.now()
        g = self.keys.group_of(sku)
        call = sc.transfer_step(
            ready=self.keys.ready(g),
            transfer=self.keys.transfer(sku, transfer_id),
            stock=self.keys.stock(sku),
            events=self.keys.events(g),
            transfer_id=transfer_id,
            now=now,
            retention_ms=self._finished_ms,
            step=step,
        )
        try:
            reply = await self.run(call)
        except InvalidState as exc:
            # `status` in a problem is the HTTP status: the transfer's goes apart.
            status = exc.extra.get("status")
            raise InvalidState(
                f"transfer {transfer_id} is {status}", transfer_status=status
            ) from None
        transfer = _transfer(reply)
        if transfer.status in ("received", "cancelled"):
            # The index lives in the id's group, not the SKU's (another slot), so it is
            # closed by its own call; on a replay too, in case a crash came in between.
            ready, index = self._transfer_index(transfer_id)
            await self.run(
                sc.index_close(ready=ready, index=index, expires_at=now + self._finished_ms)
            )
        return transfer

    async def _stepped_before(self, transfer_id: str, step: TransferStep) -> Transfer:
        """A step of a transfer that left Redis after the window: the answer
        `transferStep.lua` gave while Redis held it, from PostgreSQL."""
        archived = await self.archive.transfer(transfer_id) if self.archive else None
        if archived is None:
            raise NotFound(f"no transfer {transfer_id}")
        transfer = archived[0]
        if transfer.status in _STEPS_DONE[step]:
            return replace(transfer, replayed=True)
        raise InvalidState(
            f"transfer {transfer_id} is {transfer.status}", transfer_status=transfer.status
        )

    async def ship_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "ship")

    async def receive_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "receive")

    async def cancel_transfer(self, transfer_id: str) -> Transfer:
        return await self._transfer_step(transfer_id, "cancel")

    async def get_transfer(self, transfer_id: str) -> Transfer:
        try:
            sku = await self._transfer_sku(transfer_id)
        except NotFound:
            archived = await self.archive.transfer(transfer_id) if self.archive else None
            if archived is None:
                raise
            return archived[0]
        raw = await self.batcher.command("HGETALL", self.keys.transfer(sku, transfer_id))
        if not raw:
            raise NotFound(f"no transfer {transfer_id}")
        f = {k.decode(): val.decode() for k, val in raw.items()}
        return Transfer(f["tid"], f["st"], f["sku"], f["from"], f["to"], int(f["qty"]))
