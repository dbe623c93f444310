"""The one reader of `Authorization: Bearer <key>`, and the caller a request was
authenticated as, kept in its ASGI scope so the key is looked up once per request.

Several places ask who sent a request: the ASGI layer (an `Idempotency-Key` is scoped to
the caller; a body it refuses answers 401 first to a caller without a valid key), and the
route's dependency (`deps.authenticate`). The first to ask looks the key up; the others
read the answer from the scope.
"""

from __future__ import annotations

from starlette.types import Scope

from inventory_cache.apikeys import Authenticator, Principal

AUTHENTICATED = "inventory_cache.authenticated"


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization` header; None without one: no header, another scheme
    or an empty key."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


def authorization_of(scope: Scope) -> str | None:
    """The request's `Authorization` header (the first one), for code without a
    `Request`."""
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


async def caller(auth: Authenticator, scope: Scope, authorization: str | None) -> Principal | None:
    """Who sent the request (None: no valid key), looked up by the first to ask."""
    if AUTHENTICATED in scope:
        known: Principal | None = scope[AUTHENTICATED]
        return known
    token = bearer_token(authorization)
    principal = await auth.authenticate(token) if token else None
    scope[AUTHENTICATED] = principal
    return principal
