"""`inventory-cache` console script: one subcommand per process or admin task.

Machine-readable output (a new key, a JSON report) goes to standard output; progress and
messages go to standard error, so scripts can capture the former.
"""

from __future__ import annotations

import typer

from inventory_cache.api.cli import keys_app, serve

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(serve)
app.add_typer(keys_app, name="keys")


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("inventory-cache"))


@app.command()
def migrate(
    revision: str = typer.Option("head", help="Alembic revision to upgrade to."),
) -> None:
    """Apply the database migrations (INVENTORY_DATABASE_URL, else the demo's SQLite)."""
    from inventory_cache.settings import get_settings
    from persistence.db import database_url
    from persistence.db import migrate as run_migrations

    url = database_url(get_settings())
    run_migrations(url, revision)
    typer.echo(f"migrated to {revision}", err=True)
