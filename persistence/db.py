"""Engines, sessions and migrations: the one place that turns a URL into a database.

With `INVENTORY_DATABASE_URL` unset, the embedded demo uses SQLite in
`./.demo/inventory.sqlite3` (relative to the working directory, created on first use), so
`inventory-cache demo` needs no server. Production URLs are PostgreSQL with psycopg 3
(`postgresql+psycopg://`); plain `postgresql://` is accepted and normalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DEMO_DIR = Path(".demo")
DEMO_DATABASE_URL = f"sqlite+pysqlite:///{DEMO_DIR / 'inventory.sqlite3'}"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here, as in Settings."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def database_url(url: str | None = None) -> str:
    """The configured URL (`Settings.database_url`), or the demo's SQLite file when none
    is set. It takes the URL, not the settings: the persistence layer knows nothing of the
    service above it."""
    return normalize_url(url) if url else DEMO_DATABASE_URL


def libpq_url(url: str) -> str:
    """The URL as psycopg itself takes it (no SQLAlchemy driver suffix)."""
    return make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for `url` (default: the demo's SQLite); SQLite gets its directory,
    foreign keys and a busy timeout so the demo's processes can share the file."""
    url = normalize_url(url) if url else DEMO_DATABASE_URL
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    """Alembic's config for our migrations, without needing an alembic.ini on disk."""
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR.parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Apply every migration up to `revision` (`inventory-cache migrate`)."""
    from alembic import command

    target = normalize_url(url) if url else DEMO_DATABASE_URL
    if is_sqlite(target):
        make_engine(target).dispose()  # creates the demo directory
    command.upgrade(alembic_config(target), revision)
