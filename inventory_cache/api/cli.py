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


def require_deployment_redis(command: str) -> None:
    """Exit with one line unless a real Redis is configured or the embedded one was asked
    for: a command acting on a deployment would otherwise act on an empty, throwaway
    Redis in its own process and report nonsense (or succeed at nothing)."""
    from inventory_cache.settings import get_settings

    settings = get_settings()
    if settings.redis_url is None and not settings.allow_embedded_redis:
        typer.echo(
            f"{command}: INVENTORY_REDIS_URL is not set; point it at your Redis, or set "
            "INVENTORY_ALLOW_EMBEDDED_REDIS=true to run on an empty in-process Redis.",
            err=True,
        )
        raise typer.Exit(2)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each its own near-cache)."),
    access_log: bool = typer.Option(False, help="Log every request (costs throughput)."),
) -> None:
    """Run the HTTP API.

    uvicorn with uvloop and httptools; configured from INVENTORY_* variables.
    """
    require_deployment_redis("serve")
    import uvicorn

    from inventory_cache.api.server import GuardedHttpToolsProtocol
    from inventory_cache.redis_policy import exit_if_unsafe

    exit_if_unsafe()
    uvicorn.run(
        "inventory_cache.api.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # httptools with header size and read timeouts (api/server.py).
        http=GuardedHttpToolsProtocol,
        access_log=access_log,
        # Open SSE streams never end by themselves: give them a few seconds, then close.
        timeout_graceful_shutdown=5,
        lifespan="on",
    )


def _database() -> Any:
    from inventory_cache.settings import get_settings
    from persistence.db import database_url, make_engine

    return make_engine(database_url(get_settings().database_url))


def _mirror() -> tuple[Any, Any] | None:
    """The Redis client and key names of the API keys' mirror; None for the embedded
    demo Redis, which lives in the demo's own process (its API asks the database)."""
    from inventory_cache.connection import make_sync_redis
    from inventory_cache.keys import Keys
    from inventory_cache.settings import get_settings

    settings = get_settings()
    if settings.redis_url is None:
        return None
    return make_sync_redis(settings), Keys(settings.redis_prefix, settings.slot_groups)


@keys_app.command("create")
def create(
    scopes: str = typer.Option(..., help="Comma-separated: read, checkout, warehouse, admin."),
    name: str = typer.Option("", help="What the key is for (shown by `keys list`)."),
) -> None:
    """Create a key and print it.

    The key alone goes to standard output; it is not shown again. It is mirrored into
    Redis too, so API processes accept it while PostgreSQL is down.
    """
    from redis.exceptions import RedisError

    from inventory_cache.apikeys import create_key, mirror_keys, parse_scopes

    try:
        wanted = parse_scopes(scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from None
    db = _database()
    try:
        plain, stored = create_key(db, name=name or ",".join(sorted(wanted)), scopes=wanted)
    finally:
        db.dispose()
    mirror = _mirror()
    if mirror is not None:
        try:
            mirror_keys(*mirror, [stored])
        except RedisError as exc:  # the API mirrors it on first use, from PostgreSQL
            typer.echo(f"warning: key not mirrored into Redis yet: {exc}", err=True)
    typer.echo(f"created {stored.id} with scopes {','.join(sorted(stored.scopes))}", err=True)
    typer.echo(plain)


@keys_app.command("list")
def list_() -> None:
    """List the keys, one JSON object each.

    Id, name, scopes and times; never the secret.
    """
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
    """Revoke a key.

    API processes stop accepting it within INVENTORY_API_KEY_CACHE_SECONDS. The Redis
    mirror is revoked first, so this works while PostgreSQL is down: then the command says
    so and exits 1, and `warmup` (or this command again) records the revocation in
    PostgreSQL once it is back.
    """
    from inventory_cache.apikeys import revoke

    mirror = _mirror()
    db = _database()
    try:
        if mirror is None:
            outcome = revoke(db, key_id)
        else:
            outcome = revoke(db, key_id, redis=mirror[0], keys=mirror[1])
    finally:
        db.dispose()
    if outcome == "mirror_only":
        typer.echo(
            f"revoked {key_id} in Redis (API processes refuse it within the key cache time); "
            "PostgreSQL unreachable: run `keys revoke` again or `warmup` once it is back",
            err=True,
        )
        raise typer.Exit(1)
    if outcome == "unknown":
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}", err=True)
