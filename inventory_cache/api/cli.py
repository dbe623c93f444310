"""`inventory-cache serve` and `inventory-cache keys create|list|revoke`.

Registered on the main console script by `inventory_cache/cli.py`. Heavy imports wait
inside the commands, so other subcommands start fast. A new key is the only thing
`keys create` prints on standard output (messages go to standard error), so scripts can
capture it: `KEY=$(inventory-cache keys create --scopes read,checkout)`.
"""

from __future__ import annotations

import json
from typing import Any

import typer

keys_app = typer.Typer(
    no_args_is_help=True, help="API keys: create (prints the key once), list, revoke."
)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each its own near-cache)."),
    access_log: bool = typer.Option(False, help="Log every request (costs throughput)."),
) -> None:
    """Run the HTTP API (uvicorn, uvloop, httptools); configuration from INVENTORY_*."""
    import uvicorn

    from inventory_cache.redis_policy import exit_if_unsafe

    exit_if_unsafe()
    uvicorn.run(
        "inventory_cache.api.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        # Open SSE streams never end by themselves: give them a few seconds, then close.
        timeout_graceful_shutdown=5,
        lifespan="on",
    )


def _database() -> Any:
    from inventory_cache.settings import get_settings
    from persistence.db import database_url, make_engine

    return make_engine(database_url(get_settings()))


@keys_app.command("create")
def create(
    scopes: str = typer.Option(..., help="Comma-separated: read, checkout, warehouse, admin."),
    name: str = typer.Option("", help="What the key is for (shown by `keys list`)."),
) -> None:
    """Create a key and print it, alone, on standard output: it is not shown again."""
    from inventory_cache.apikeys import create_key, parse_scopes

    try:
        wanted = parse_scopes(scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    db = _database()
    try:
        plain, stored = create_key(db, name=name or ",".join(sorted(wanted)), scopes=wanted)
    finally:
        db.dispose()
    typer.echo(f"created {stored.id} with scopes {','.join(sorted(stored.scopes))}", err=True)
    typer.echo(plain)


@keys_app.command("list")
def list_() -> None:
    """One JSON object per key (id, name, scopes, times); never the secret."""
    from inventory_cache.apikeys import list_keys

    db = _database()
    try:
        keys = list_keys(db)
    finally:
        db.dispose()
    for k in keys:
        row = {
            "id": k.id,
            "name": k.name,
            "scopes": sorted(k.scopes),
            "created_at": k.created_at.isoformat() if k.created_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
        }
        typer.echo(json.dumps(row))


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id, from `keys list`.")) -> None:
    """Revoke a key; API processes stop accepting it within INVENTORY_API_KEY_CACHE_SECONDS."""
    from inventory_cache.apikeys import revoke_key

    db = _database()
    try:
        found = revoke_key(db, key_id)
    finally:
        db.dispose()
    if not found:
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}", err=True)
