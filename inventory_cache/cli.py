"""`inventory-cache` console script: one subcommand per process or admin task.

Machine-readable output (a new key, a JSON report) goes to standard output; progress and
messages go to standard error, so scripts can capture the former.
"""

from __future__ import annotations

import typer

from inventory_cache.api.cli import keys_app, require_deployment_redis, serve

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: flags read `--x / --no-x`, and paragraphs are rewrapped whole.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.add_typer(keys_app, name="keys")


def _installed_version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("inventory-cache")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"inventory-cache {_installed_version()}")
        raise typer.Exit()


@app.callback()
def main(
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the installed version and exit.",
    ),
) -> None:
    """`inventory-cache` console script: one subcommand per process or admin task.

    Machine-readable output (a new key, a JSON report) goes to standard output; progress
    and messages go to standard error, so scripts can capture the former.
    """


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(_installed_version())


@app.command()
def migrate(
    revision: str = typer.Option("head", help="Alembic revision to upgrade to."),
) -> None:
    """Apply the database migrations.

    The database is INVENTORY_DATABASE_URL, else the demo's SQLite file.
    """
    from inventory_cache.settings import get_settings
    from persistence.db import database_url
    from persistence.db import migrate as run_migrations

    url = database_url(get_settings().database_url)
    run_migrations(url, revision)
    typer.echo(f"migrated to {revision}", err=True)


@app.command()
def worker(
    consumer: str = typer.Option("", help="Consumer name (default <host>-<pid>); unique."),
    batch_size: int = typer.Option(1000, min=1, max=10_000, help="Events per transaction."),
    claim_idle_ms: int = typer.Option(30_000, min=100, help="Take over entries idle this long."),
    max_deliveries: int = typer.Option(5, min=1, help="Deliveries before dead-lettering."),
    metrics_port: int = typer.Option(0, help="Serve Prometheus metrics on this port (0: off)."),
    connections: int = typer.Option(
        2, min=1, max=16, help="Database connections committing batches side by side."
    ),
    linger_ms: int = typer.Option(
        50,
        min=0,
        max=1000,
        help="After a read short of a batch, wait this long from its start before the next.",
    ),
) -> None:
    """Write every accepted change to the database, until SIGTERM.

    Reads every slot group's event stream through a consumer group shared with the other
    workers.
    """
    require_deployment_redis("worker")
    from inventory_cache.redis_policy import exit_if_unsafe
    from inventory_cache.worker import run_worker

    exit_if_unsafe()
    run_worker(
        consumer=consumer,
        batch_size=batch_size,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
        metrics_port=metrics_port,
        connections=connections,
        linger_ms=linger_ms,
    )


@app.command()
def warmup(
    if_empty: bool = typer.Option(False, help="Do nothing when Redis is already warm."),
) -> None:
    """Rebuild Redis from the database, then mark it ready.

    Prints a JSON summary of what was restored.
    """
    require_deployment_redis("warmup")
    from inventory_cache.redis_policy import exit_if_unsafe
    from inventory_cache.warmup import run_warmup

    exit_if_unsafe()
    typer.echo(run_warmup(if_empty=if_empty))


@app.command()
def verify(
    wait: float = typer.Option(30.0, help="Seconds to wait for the worker to catch up."),
) -> None:
    """Compare Redis with the database.

    Prints every difference and exits 1 if there is any.
    """
    require_deployment_redis("verify")
    from inventory_cache.verify import run_verify

    raise typer.Exit(run_verify(wait_s=wait))


@app.command()
def scheduler() -> None:
    """Run the periodic jobs, until SIGTERM.

    Expiry sweep, scheduled reconciliation, alerts and back-in-stock notices. Run one per
    host if you like: a Redis lease lets exactly one of them act.
    """
    require_deployment_redis("scheduler")
    from inventory_cache.redis_policy import exit_if_unsafe
    from inventory_cache.scheduler import run_scheduler

    exit_if_unsafe()
    run_scheduler()


@app.command()
def reconcile(
    mode: str = typer.Option("", help="report or correct (default INVENTORY_RECONCILE_MODE)."),
    json_output: bool = typer.Option(False, "--json", help="Print the run as JSON instead."),
) -> None:
    """Reconcile with the WMS now and print the differences.

    Exits 0 when none remain, 1 when some do (report mode, or a refused correction), 2
    when the run failed.
    """
    from inventory_cache.reconcile import Mode, run_command

    modes: dict[str, Mode | None] = {
        "": None,
        "report": "report",
        "correct": "correct",
    }
    if mode not in modes:
        raise typer.BadParameter("report or correct", param_hint="--mode")
    require_deployment_redis("reconcile")
    raise typer.Exit(run_command(mode=modes[mode], as_json=json_output))


@app.command()
def forecast(
    history_days: int = typer.Option(0, min=0, help="Days of history (default from settings)."),
) -> None:
    """Forecast every (sku, location) with sales now (the nightly job, on demand); prints
    the run's JSON summary."""
    from inventory_cache.forecast_job import run_command

    raise typer.Exit(run_command(history_days=history_days or None))


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(0, help="Port to listen on (default: INVENTORY_PORT, 8000)."),
    reset: bool = typer.Option(
        False, "--reset", help="Delete the demo's data in ./.demo/ first and start afresh."
    ),
) -> None:
    """Run the whole service in one process, for a first look.

    Embedded Redis and SQLite unless INVENTORY_REDIS_URL and INVENTORY_DATABASE_URL are
    set. Data in ./.demo/ persists between runs.
    """
    from inventory_cache.demo import run_demo

    raise typer.Exit(run_demo(host=host, port=port or None, reset=reset))
