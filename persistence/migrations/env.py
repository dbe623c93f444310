"""Alembic environment: our metadata, the URL from the config (set by `migrate`) or `-x url=`.

Runs online only: migrations are applied to a live database, never rendered as SQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from persistence.db import database_url, make_engine, normalize_url
from persistence.models import Base

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
    "sqlalchemy.url"
)
engine = make_engine(normalize_url(url) if url else database_url(), poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
