"""Every Redis key name, built in one place.

Keys carry a Redis Cluster hash tag naming a *slot group*: ``crc32(id) % slot_groups``.
A SKU's stock, reservation parts, transfers, idempotency records and event stream all
share its group, so every Lua call touches one slot. Orders and transfers also get an
*index* record in the group of their own id, so they can be found by id alone.
See ARCHITECTURE.md for what each key holds.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=64)
def _group_key_pattern(prefix: str, kinds: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(k) for k in kinds)
    return re.compile(rf"^{re.escape(prefix)}:\{{(\d+)\}}:({alternatives}):(.*)$", re.DOTALL)


@lru_cache(maxsize=64)
def _stock_change_pattern(prefix: str) -> re.Pattern[bytes]:
    return re.compile(
        rb"^" + re.escape(prefix.encode()) + rb":\{\d+\}:(?:s:(.*)|ready)\Z", re.DOTALL
    )


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "inv"
    groups: int = 256

    def group_of(self, ident: str) -> int:
        return zlib.crc32(ident.encode()) % self.groups

    def tag(self, group: int) -> str:
        return f"{self.prefix}:{{{group}}}"

    def all_groups(self) -> range:
        return range(self.groups)

    # finding keys (SCAN, client-side tracking) and reading them back
    def tagged_prefix(self) -> str:
        """What every key of a slot group starts with, whatever the group."""
        return f"{self.prefix}:{{"

    def scan_pattern(self, kind: str | None = None) -> str:
        """SCAN `MATCH` pattern of the `<kind>` keys of every group (`s` stock hashes, `r`
        parts...), or of every key of every group without a kind."""
        if kind is None:
            return f"{self.prefix}:{{*}}:*"
        return f"{self.prefix}:{{*}}:{kind}:*"

    def key_pattern(self, *kinds: str) -> re.Pattern[str]:
        """Matches a `<prefix>:{<g>}:<kind>:<id>` key of one of `kinds`: (group, kind, id).
        The pattern is exact where `scan_pattern` is a glob (a SKU may hold `:s:`)."""
        return _group_key_pattern(self.prefix, kinds)

    def stock_sku(self, key: bytes | str) -> str | None:
        """The SKU of a stock hash's key (`stock`); None for any other key."""
        name = key.decode() if isinstance(key, bytes) else key
        m = self.key_pattern("s").match(name)
        return None if m is None else m[3]

    def stock_change(self, key: bytes) -> tuple[str | None, bool]:
        """What a written key means to a cache of stock answers: the SKU whose stock hash
        it is, or whether it is a group's readiness marker (then every answer is void);
        (None, False) for any other key. One match on the bytes as Redis sends them: the
        near-cache reads the name of every key written under the prefix."""
        m = _stock_change_pattern(self.prefix).match(key)
        if m is None:
            return None, False
        return (None, True) if m[1] is None else (m[1].decode(), False)

    # per group
    def ready(self, group: int) -> str:
        """Readiness marker: absent after a flush, so scripts refuse instead of reading 0."""
        return f"{self.tag(group)}:ready"

    def behind(self, group: int) -> str:
        """Why the group was found behind the ledger (`behind.py`); deleted by warmup."""
        return f"{self.tag(group)}:behind"

    def healed(self, group: int) -> str:
        """The newest ledger entry a warmup restored the group up to (`behind.py`)."""
        return f"{self.tag(group)}:healed"

    def events(self, group: int) -> str:
        return f"{self.tag(group)}:ev"

    def expiry(self, group: int) -> str:
        return f"{self.tag(group)}:exp"

    def alerts_cursor(self, group: int) -> str:
        """The id of the last event of the group's stream the alert monitor evaluated."""
        return f"{self.tag(group)}:cur:alerts"

    # per SKU (in the SKU's group)
    def stock(self, sku: str) -> str:
        return f"{self.tag(self.group_of(sku))}:s:{sku}"

    def bundle(self, sku: str) -> str:
        """The definition of a bundle SKU (hash: `c` its components as JSON
        `[[sku, qty], ...]`, '' once deleted; `v` its version), in the bundle's group. The
        scripts that write it copy a live definition into the SKU's stock hash (`bdef`),
        where availability and the one-script reservation find it in the key they read
        anyway."""
        return f"{self.tag(self.group_of(sku))}:b:{sku}"

    def part(self, group: int, order_id: str) -> str:
        return f"{self.tag(group)}:r:{order_id}"

    def transfer(self, sku: str, transfer_id: str) -> str:
        return f"{self.tag(self.group_of(sku))}:t:{transfer_id}"

    def limit(self, sku: str) -> str:
        """The per-customer limit of a SKU (`set_limit-3.lua`): `n`, `w`, `v`, `gen`."""
        return f"{self.tag(self.group_of(sku))}:cl:{sku}"

    def customer_count(self, sku: str, customer_id: str) -> str:
        """What one customer holds of a limited SKU (`lua/includes/limitOf.lua`), in
        the SKU's group; the SKU's length makes (sku, customer) unambiguous although both
        may hold `:`."""
        return f"{self.tag(self.group_of(sku))}:cc:{len(sku)}:{sku}:{customer_id}"

    def customer_count_of(self, key: str) -> tuple[str, str] | None:
        """(sku, customer) of a `customer_count` key; None for any other key."""
        m = self.key_pattern("cc").match(key)
        if m is None:
            return None
        length, sep, rest = m[3].partition(":")
        if not sep or not length.isdigit():
            return None
        n = int(length)
        return rest[:n], rest[n + 1 :]

    def preorders(self, sku: str) -> str:
        """The pre-order book of a SKU (hash, in the SKU's group): `#` the last sequence
        number given, `<seq>` one pre-order line as JSON `[order, token, location, qty,
        expected_at ms, state]`, state `a` (awaiting its incoming stock), `l` (converted
        into an ordinary lock when the stock was received) or `u` (uncovered: the
        incoming stock was cancelled or came short). Entries leave when their order
        settles. The open incoming records themselves live in the stock hash (`n:<ref>`)
        beside the preorder limit (`p:<loc>`) and the awaiting units (`q:<loc>`), so a
        product page reads them with the levels in one HGETALL."""
        return f"{self.tag(self.group_of(sku))}:pq:{sku}"

    def incoming_closed(self, sku: str) -> str:
        """The received and cancelled incoming records of a SKU (hash, ref -> JSON
        `[location, qty, expected_at ms, status, received qty]`): what a repeated receive
        or cancel is answered from."""
        return f"{self.tag(self.group_of(sku))}:nc:{sku}"

    def op(self, kind: str, sku: str, ref: str) -> str:
        """The idempotency record of a movement (`op_suffix`), in the SKU's group."""
        return self.op_of(sku, self.op_suffix(kind, sku, ref))

    @staticmethod
    def op_suffix(kind: str, sku: str, ref: str) -> str:
        """`<kind>:<len(sku)>:<sku>:<ref>`: unique per (kind, sku, ref) although SKUs and
        refs may hold `:` (joined plainly, SKU `a` with ref `x:r` and SKU `a:x` with ref
        `r` made one key, so the second movement was refused as a retry of the first).
        Kinds are fixed names without `:`. It is also the key of the movement's record in
        PostgreSQL (`idempotency_records`), from which warmup restores this key."""
        return f"{kind}:{len(sku)}:{sku}:{ref}"

    def op_of(self, sku: str, suffix: str) -> str:
        return f"{self.tag(self.group_of(sku))}:op:{suffix}"

    # per id (in the id's own group)
    def order_index(self, order_id: str) -> str:
        return f"{self.tag(self.group_of(order_id))}:o:{order_id}"

    def transfer_index(self, transfer_id: str) -> str:
        return f"{self.tag(self.group_of(transfer_id))}:ti:{transfer_id}"

    def incoming_index(self, ref: str) -> str:
        """The SKU an incoming ref was created for (a string), in the ref's own group, so
        `POST /v1/incoming/{ref}/receive` finds the record by its ref alone."""
        return f"{self.tag(self.group_of(ref))}:ni:{ref}"

    def barcode(self, gtin: str) -> str:
        """Cached SKU of a barcode (GTIN-14), in the code's own group (barcodes.py)."""
        return f"{self.tag(self.group_of(gtin))}:bc:{gtin}"

    # per API key (its public id as the hash tag)
    def rate_limit(self, api_key_id: str) -> str:
        """The GCRA limiter of one API key (`rate_limit-1.lua`), alone in its slot."""
        return f"{self.prefix}:rl:{{{api_key_id}}}"

    # global
    def api_keys(self) -> str:
        """The API keys' mirror (`apikeys.py`): one hash, so authentication needs no
        PostgreSQL; fields `h:<sha256>` (the key's JSON), `r:<sha256>` (revoked at, ms)
        and `i:<key id>` (its sha256, so a key can be revoked by id)."""
        return f"{self.prefix}:apikeys"

    def dead_letters(self) -> str:
        return f"{self.prefix}:dead"

    def worker_health(self, consumer: str) -> str:
        """The health record of one write-behind worker (JSON, expiring)."""
        return f"{self.prefix}:worker:{consumer}"

    # leases (`lease.py`): hash tag `{lease}`, so a lease, its fence and its claims share a slot
    def lease(self, name: str) -> str:
        return f"{self.prefix}:{{lease}}:{name}"

    def lease_fence(self, name: str) -> str:
        """The lease's fencing token counter."""
        return f"{self.lease(name)}:fence"

    def lease_run(self, name: str, run: str) -> str:
        """The claim of one run of a scheduled job under the lease."""
        return f"{self.lease(name)}:run:{run}"

    def http_idempotency(self, api_key_id: str, key_digest: str) -> str:
        """An HTTP `Idempotency-Key` record of one API key; plain commands, any slot."""
        return f"{self.prefix}:idem:{api_key_id}:{key_digest}"
