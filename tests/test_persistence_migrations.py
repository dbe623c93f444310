"""The migrations are the schema: they build what the models declare, on PostgreSQL and on
the demo's SQLite, they go down and up again, and the ledger's contract names exist."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from persistence.db import alembic_config, database_url, make_engine, migrate
from persistence.models import Base
from tests.support.postgres import fresh_database

CONTRACT_TABLES = {
    "locations",
    "skus",
    "barcodes",
    "stock_levels",
    "movements",
    "reservations",
    "reservation_lines",
    "transfers",
    "idempotency_records",
    "policies",
    "api_keys",
    "reconcile_runs",
    "reconcile_diffs",
    "alerts",
    "subscriptions",
    "bundles",
}
MOVEMENT_COLUMNS = {
    "id",
    "op_id",
    "sku",
    "location",
    "type",
    "reason",
    "ref",
    "delta_on_hand",
    "delta_locked",
    "on_hand_after",
    "locked_after",
    "safety_stock_after",
    "version",
    "created_at",
    "stream_id",
    "recorded_at",
    "bundle",
}


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path / 'inventory.sqlite3'}"
        migrate(url)
        yield url
    else:
        with fresh_database() as url:
            yield url


def test_upgrade_builds_every_contract_table_with_the_ledger_columns(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) >= CONTRACT_TABLES
        assert {c["name"] for c in inspector.get_columns("movements")} == MOVEMENT_COLUMNS
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("movements")}
        assert ("op_id", "sku", "location") in uniques
    finally:
        engine.dispose()


def test_models_and_migrations_agree(migrated_url: str) -> None:
    """A model change without a migration shows here as a non-empty autogenerate diff.

    SQLite does not reflect the direction of an index column, so there the ledger's
    `(sku, location, id DESC)` index can only be compared on PostgreSQL.
    """
    engine = make_engine(migrated_url)

    def comparable(obj: object, name: str | None, type_: str, *_: object) -> bool:
        return not (engine.dialect.name == "sqlite" and name == "ix_movements_sku_location_id")

    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": comparable}
            )
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_then_upgrade_again(migrated_url: str) -> None:
    command.downgrade(alembic_config(migrated_url), "base")
    engine = make_engine(migrated_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate(migrated_url)
        assert set(sa.inspect(engine).get_table_names()) >= CONTRACT_TABLES
    finally:
        engine.dispose()


def test_the_ledger_refuses_a_second_row_for_one_operation_and_location(
    migrated_url: str,
) -> None:
    movements = Base.metadata.tables["movements"]
    row = {
        "op_id": "inbound:r1",
        "sku": "A",
        "location": "north",
        "type": "inbound",
        "reason": "inbound",
        "ref": "r1",
        "delta_on_hand": 5,
        "delta_locked": 0,
        "on_hand_after": 5,
        "locked_after": 0,
        "safety_stock_after": 0,
        "version": 1,
        "created_at": datetime(2027, 1, 1, tzinfo=UTC),
        "stream_id": "1-0",
    }
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            conn.execute(movements.insert(), [row, {**row, "location": "south"}])
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(movements.insert(), [{**row, "stream_id": "2-0"}])
        with engine.connect() as conn:
            ids = conn.execute(sa.select(movements.c.id).order_by(movements.c.id)).scalars()
            assert list(ids) == [1, 2]
    finally:
        engine.dispose()


def test_without_a_database_url_the_demo_uses_sqlite_under_dot_demo() -> None:
    assert database_url(None) == "sqlite+pysqlite:///.demo/inventory.sqlite3"
