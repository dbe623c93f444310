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
) -> None:
    """Write-behind worker: every group's event stream into the database, until SIGTERM."""
    from inventory_cache.worker import run_worker

    run_worker(
        consumer=consumer,
        batch_size=batch_size,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
        metrics_port=metrics_port,
        connections=connections,
    )


@app.command()
def warmup(
    if_empty: bool = typer.Option(False, help="Do nothing when Redis is already warm."),
) -> None:
    """Rebuild Redis from the database, then mark it ready (prints a JSON summary)."""
    from inventory_cache.warmup import run_warmup

    typer.echo(run_warmup(if_empty=if_empty))


@app.command()
def verify(
    wait: float = typer.Option(30.0, help="Seconds to wait for the worker to catch up."),
) -> None:
    """Compare Redis with the database; print every difference; exit 1 on any."""
    from inventory_cache.verify import run_verify

    raise typer.Exit(run_verify(wait_s=wait))


@app.command()
def scheduler() -> None:
    """Expiry sweep, scheduled reconciliation, alerts and back in stock, until SIGTERM.
    Run one per host if you like: a Redis lease lets exactly one of them act."""
    from inventory_cache.scheduler import run_scheduler

    run_scheduler()


@app.command()
def reconcile(
    mode: str = typer.Option("", help="report or correct (default INVENTORY_RECONCILE_MODE)."),
    json_output: bool = typer.Option(False, "--json", help="Print the run as JSON instead."),
) -> None:
    """Reconcile with the WMS now; print the differences. Exit 0 when none remain, 1 when
    some do (report mode, or a refused correction), 2 when the run failed."""
    from inventory_cache.reconcile import Mode, run_command

    modes: dict[str, Mode | None] = {
        "": None,
        "report": "report",
        "correct": "correct",
    }
    if mode not in modes:
        raise typer.BadParameter("report or correct", param_hint="--mode")
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
) -> None:
    """Everything in one process on the embedded default (or the configured servers)."""
    from inventory_cache.demo import run_demo

    run_demo(host=host, port=port or None)
