"""`inventory-cache` console script: one subcommand per process or admin task.

Machine-readable output (a new key, a JSON report) goes to standard output; progress and
messages go to standard error, so scripts can capture the former.
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("inventory-cache"))
