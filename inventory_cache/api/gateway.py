"""The one ASGI layer in front of every route: request metrics, the body guard and
`Idempotency-Key`.

They used to be three pure ASGI middlewares, and each layer cost every request a
coroutine and a pass over its headers; a trivial route served about two thirds of a bare
FastAPI app's rate. As one layer, a GET pays for a timer and a `send` wrapper, and a POST
reads its headers once and its body once: the guard's checks, the `Idempotency-Key`
fingerprint and the route all use the same bytes.

On a POST, PUT or PATCH the checks run in the order they always did: 413 for a declared
or counted size over the limit, 415 for a `Content-Encoding` or a content type that is
not JSON, 422 for a body that is not UTF-8 JSON (401 first for a caller without a valid
key, `guards.py`), then, on a POST, `Idempotency-Key` (`idempotency.py`). The caller an
`Idempotency-Key` request was authenticated as is left in the scope (`bearer.caller`), so
the route's dependency does not look the key up again. Every problem body is rendered by
`problems.py`.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inventory_cache.api.bearer import authorization_of, caller
from inventory_cache.api.guards import GuardedBody, guard_body, replay_body
from inventory_cache.api.idempotency import (
    IdempotencyStore,
    answer_from,
    invalid_key,
    read_body,
    request_fingerprint,
    run_and_store,
    valid_key,
)
from inventory_cache.api.metrics import Metrics
from inventory_cache.api.problems import (
    UNAVAILABLE,
    Unavailable,
    problem_from,
    unavailable_detail,
)
from inventory_cache.errors import RedisFull

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class Gateway:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope["method"]
        try:
            if method in WITH_BODY:
                await self._with_body(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(method, template, status, time.perf_counter() - start)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = await guard_body(scope, receive, send, self.limit)
        if guarded is None:
            return  # answered (413, 415, 401 or 422), or the client went away
        idem = guarded.idempotency_key if scope["method"] == "POST" else None
        if idem is None:
            await self.app(scope, guarded.receive(receive), send)
            return
        await self._idempotent(scope, receive, send, guarded, idem)

    async def _idempotent(
        self, scope: Scope, receive: Receive, send: Send, guarded: GuardedBody, idem: bytes
    ) -> None:
        if not valid_key(idem):
            await invalid_key()(scope, receive, send)
            return
        if guarded.body is None:  # an empty body (Content-Length: 0), not read yet
            body, receive = await read_body(receive)
        else:
            body, receive = guarded.body, replay_body(guarded.body, receive)
        services = scope["app"].state.services
        store: IdempotencyStore = services.idempotency
        fp = request_fingerprint(scope["method"], scope["path"], scope["query_string"], body)
        try:
            principal = await caller(services.auth, scope, authorization_of(scope))
            key = "" if principal is None else store.key(principal.key_id, idem)
            record = None if principal is None else await store.begin(key, fp)
        except UNAVAILABLE as exc:
            await problem_from(Unavailable(unavailable_detail(exc)))(scope, receive, send)
            return
        except RedisFull as exc:
            await problem_from(exc)(scope, receive, send)
            return
        if principal is None:  # the route answers 401
            await self.app(scope, receive, send)
        elif record is not None:
            await answer_from(record, fp)(scope, receive, send)
        else:
            await run_and_store(self.app, scope, receive, send, store, key, fp)
