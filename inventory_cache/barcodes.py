"""Barcodes (GTIN: EAN-13, UPC-A, EAN-8, GTIN-14) and the SKU each one stands for.

A scanner may send the same item as a 12-digit UPC-A or as the 13-digit EAN-13 with a
leading zero, depending on its settings, so every code is validated (length, digits,
GS1 check digit) and stored in its GTIN-14 form: zero-padded on the left to 14 digits, as
GS1 recommends for databases. All four forms of one item therefore find one row.

The mapping lives in PostgreSQL (`barcodes`, the truth) and is cached in Redis (one
string per code, in the code's slot group), because a till batch resolves up to a
thousand codes and must not cost a thousand queries. The cache is write-through: a
change writes PostgreSQL first, then overwrites the cached value (a deletion caches a
tombstone); a cache miss fills from PostgreSQL with `SET NX`, so a fill that read the
old row can never overwrite the newer value a change has just cached. Entries expire,
so even a lost race heals within `ttl_seconds`; unknown codes are cached briefly as well,
so a scanner hammering an unmapped code does not reach the database each time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from inventory_cache import validation as v
from inventory_cache.errors import NotFound, ValidationError
from inventory_cache.keys import Keys
from persistence.models import Barcode, Sku

GTIN_KINDS = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}
GTIN_LENGTH = 14
_TOMBSTONE = b""


def check_digit(payload: str) -> int:
    """The GS1 check digit of `payload` (every digit but the last): weights 3, 1, 3...
    from the right, and the digit that brings the sum to a multiple of 10."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def normalize(code: Any, field: str = "barcode") -> str:
    """The GTIN-14 form of a scanned code; a `ValidationError` names what is wrong."""
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        raise ValidationError(f"{field} must be a string of digits", field=field)
    if len(code) not in GTIN_KINDS:
        raise ValidationError(
            f"{field} must have 8 (EAN-8), 12 (UPC-A), 13 (EAN-13) or 14 (GTIN-14) digits",
            field=field,
        )
    expected = check_digit(code[:-1])
    if int(code[-1]) != expected:
        raise ValidationError(
            f"{field} {code} has a bad check digit (expected {expected})", field=field
        )
    return code.rjust(GTIN_LENGTH, "0")


@dataclass(frozen=True, slots=True)
class BarcodeMapping:
    barcode: str  # GTIN-14
    sku: str


class BarcodeStore:
    """The barcode → SKU mapping: PostgreSQL behind a write-through Redis cache."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        db: Engine,
        *,
        ttl_seconds: int = 86400,
        miss_ttl_seconds: int = 60,
    ) -> None:
        self.client = client
        self.keys = keys
        self.db = db
        self.ttl_seconds = ttl_seconds
        self.miss_ttl_seconds = miss_ttl_seconds

    def key(self, gtin: str) -> str:
        return self.keys.barcode(gtin)

    async def put(self, code: str, sku: str) -> BarcodeMapping:
        """Map `code` to `sku` (replacing any earlier mapping); the SKU joins the catalogue."""
        gtin = normalize(code)
        v.ident(sku, "sku")
        await to_thread.run_sync(self._db_put, gtin, sku)
        await self.client.set(self.key(gtin), sku, ex=self.ttl_seconds)
        return BarcodeMapping(gtin, sku)

    async def get(self, code: str) -> BarcodeMapping:
        gtin = normalize(code)
        found = await self.resolve_many([gtin])
        if gtin not in found:
            raise NotFound(f"no SKU for barcode {gtin}")
        return BarcodeMapping(gtin, found[gtin])

    async def delete(self, code: str) -> None:
        gtin = normalize(code)
        existed = await to_thread.run_sync(self._db_delete, gtin)
        await self.client.set(self.key(gtin), _TOMBSTONE, ex=self.miss_ttl_seconds)
        if not existed:
            raise NotFound(f"no SKU for barcode {gtin}")

    async def resolve_many(self, gtins: Collection[str]) -> dict[str, str]:
        """SKUs of already normalised codes: the cache in one round trip, then one query
        for the misses. Unknown codes are absent from the answer."""
        codes = sorted(set(gtins))
        if not codes:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for gtin in codes:
            pipe.get(self.key(gtin))
        cached = await pipe.execute()
        found: dict[str, str] = {}
        misses: list[str] = []
        for gtin, raw in zip(codes, cached, strict=True):
            if raw is None:
                misses.append(gtin)
            elif raw != _TOMBSTONE:
                found[gtin] = raw.decode()
        if misses:
            rows = await to_thread.run_sync(self._db_get, misses)
            pipe = self.client.pipeline(transaction=False)
            for gtin in misses:
                sku = rows.get(gtin)
                if sku is None:
                    pipe.set(self.key(gtin), _TOMBSTONE, nx=True, ex=self.miss_ttl_seconds)
                else:
                    pipe.set(self.key(gtin), sku, nx=True, ex=self.ttl_seconds)
                    found[gtin] = sku
            await pipe.execute()
        return found

    # ---------------------------------------------------------------- PostgreSQL
    def _insert(self) -> Any:
        return (sqlite if self.db.dialect.name == "sqlite" else postgresql).insert

    def _db_put(self, gtin: str, sku: str) -> None:
        insert = self._insert()
        with self.db.begin() as conn:
            conn.execute(insert(Sku).values(sku=sku).on_conflict_do_nothing())
            stmt = insert(Barcode).values(code=gtin, sku=sku)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[Barcode.code], set_={"sku": sku})
            )

    def _db_delete(self, gtin: str) -> bool:
        with self.db.begin() as conn:
            result = conn.execute(delete(Barcode).where(Barcode.code == gtin))
            return bool(result.rowcount)

    def _db_get(self, gtins: list[str]) -> dict[str, str]:
        with self.db.connect() as conn:
            rows = conn.execute(select(Barcode.code, Barcode.sku).where(Barcode.code.in_(gtins)))
            return {code: sku for code, sku in rows}
