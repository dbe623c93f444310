"""Barcodes: GS1 check digits, one GTIN-14 form per item, PostgreSQL behind a Redis cache.

The store runs against real PostgreSQL (a migrated database for this module) and, like
the engine, real Redis, fakeredis and a Redis Cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from inventory_cache.barcodes import BarcodeStore, check_digit, normalize
from inventory_cache.engine import StockEngine
from inventory_cache.errors import NotFound, ValidationError
from persistence.db import make_engine
from persistence.models import Barcode, Sku
from tests.support.postgres import fresh_database


@pytest.fixture(scope="module")
def db() -> Iterator[Engine]:
    with fresh_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def store(engine: StockEngine, db: Engine) -> BarcodeStore:
    return BarcodeStore(engine.client, engine.keys, db)


def fresh_code() -> str:
    """A valid EAN-13 no other test uses (the database is shared by the module)."""
    payload = str(uuid.uuid4().int)[:12]
    return payload + str(check_digit(payload))


def rows(db: Engine, code: str) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(Barcode.code, Barcode.sku).where(Barcode.code == code)))


@pytest.mark.parametrize(
    ("code", "gtin14"),
    [
        ("4006381333931", "04006381333931"),  # EAN-13
        ("036000291452", "00036000291452"),  # UPC-A
        ("96385074", "00000096385074"),  # EAN-8
        ("10012345678902", "10012345678902"),  # GTIN-14 (a case of a trade item)
    ],
)
def test_published_codes_are_valid_and_take_their_gtin14_form(code: str, gtin14: str) -> None:
    assert normalize(code) == gtin14


def test_upc_a_and_its_ean13_and_gtin14_forms_are_one_item() -> None:
    assert normalize("036000291452") == normalize("0036000291452") == normalize("00036000291452")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("4006381333932", "bad check digit (expected 1)"),
        ("036000291453", "bad check digit (expected 2)"),
        ("96385075", "bad check digit (expected 4)"),
        ("123456789", "must have 8 (EAN-8), 12 (UPC-A), 13 (EAN-13) or 14 (GTIN-14) digits"),
        ("40063813339a1", "must be a string of digits"),
        ("\uff14" * 13, "must be a string of digits"),  # full-width digits are not digits here
        (4006381333931, "must be a string of digits"),
        ("", "must be a string of digits"),
    ],
)
def test_a_malformed_code_is_a_validation_error_that_says_why(code: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalize(code)
    assert message in err.value.detail
    assert err.value.extra["field"] == "barcode"


async def test_put_then_get_by_any_form_reads_one_row(store: BarcodeStore, db: Engine) -> None:
    mapping = await store.put("036000291452", "tshirt-red-m")

    assert mapping.barcode == "00036000291452"
    assert rows(db, "00036000291452") == [("00036000291452", "tshirt-red-m")]
    with db.connect() as conn:
        assert conn.execute(select(Sku.sku).where(Sku.sku == "tshirt-red-m")).scalar() is not None
    for form in ("036000291452", "0036000291452", "00036000291452"):
        assert (await store.get(form)).sku == "tshirt-red-m"


async def test_put_replaces_the_mapping_in_the_database_and_the_cache(
    store: BarcodeStore, db: Engine
) -> None:
    code = fresh_code()
    await store.put(code, "old-sku")
    assert (await store.get(code)).sku == "old-sku"  # now cached

    await store.put(code, "new-sku")

    assert (await store.get(code)).sku == "new-sku"
    assert rows(db, normalize(code)) == [(normalize(code), "new-sku")]


async def test_a_cache_miss_reads_postgresql_and_fills_the_cache(
    store: BarcodeStore, engine: StockEngine
) -> None:
    code = normalize(fresh_code())
    await store.put(code, "sku-2")
    await engine.client.delete(store.key(code))  # e.g. a flushed or restarted Redis

    assert await store.resolve_many([code]) == {code: "sku-2"}
    assert await engine.client.get(store.key(code)) == b"sku-2"


async def test_delete_removes_the_row_and_the_cached_value(store: BarcodeStore, db: Engine) -> None:
    code = fresh_code()
    await store.put(code, "sku-3")
    await store.get(code)

    await store.delete(code)

    assert rows(db, normalize(code)) == []
    with pytest.raises(NotFound):
        await store.get(code)
    with pytest.raises(NotFound):
        await store.delete(code)


async def test_unknown_codes_are_absent_and_cached_only_briefly(
    store: BarcodeStore, engine: StockEngine
) -> None:
    known, unknown = normalize(fresh_code()), normalize(fresh_code())
    await store.put(known, "sku-4")

    assert await store.resolve_many([known, unknown]) == {known: "sku-4"}
    ttl = await engine.client.ttl(store.key(unknown))
    assert 0 < ttl <= store.miss_ttl_seconds
    # A mapping made later is seen at once: the change overwrites the cached miss.
    await store.put(unknown, "sku-5")
    assert await store.resolve_many([unknown]) == {unknown: "sku-5"}


async def test_an_invalid_sku_is_refused_before_anything_is_written(
    store: BarcodeStore, db: Engine
) -> None:
    code = fresh_code()
    with pytest.raises(ValidationError):
        await store.put(code, "no spaces allowed")
    assert rows(db, normalize(code)) == []
