"""`Idempotency-Key` on every POST: the first successful answer is stored and replayed.

Natural ids (order id, transfer id, ref) already make each operation idempotent inside
Lua; this header adds the same promise at the HTTP level for any POST, including routes
added later, because the one ASGI layer in front of all of them applies it
(`gateway.py`, which reads the body and authenticates the caller; the functions here
answer).

- Scope: the record's key holds the *API key's row id*, so one client never receives
  another's stored answer, and a replay is only given to a key that still authenticates.
  A request whose key does not authenticate passes through untouched (the route answers
  401). The caller is authenticated once: the route reuses this lookup.
- Same key, same request (method, path, query and the JSON body with keys sorted): the
  stored status and body, with `Idempotent-Replayed: true`. Same key, another request:
  409 `idempotency_mismatch`. Same key while the first request is still running: 409
  `invalid_state`, retry shortly.
- Only 2xx answers are stored. A refused request (4xx) changed nothing, so a retry runs
  again, exactly as a retry with the same natural id does in the engine (an order refused
  for stock may be retried once stock arrives). A 5xx or a crash drops the in-progress
  marker, or it lapses after `PENDING_SECONDS`.
- Redis full (over `maxmemory`): a new key is refused with 503 `not_ready` naming Redis
  memory before the route runs; an answer whose record no longer fits is still sent, and
  its marker dropped, so a retry runs again and replays through the natural id.
- Records live `INVENTORY_IDEMPOTENCY_KEY_TTL_SECONDS` (default 24 h), like Stripe's: in
  Redis for at most `INVENTORY_FINISHED_RETENTION_SECONDS`, in PostgreSQL for the rest
  (`IdempotencyStore`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inventory_cache.api.guards import replay_body
from inventory_cache.api.problems import IdempotencyKeyReused, RequestInProgress, problem_from
from inventory_cache.archive import OrderArchive
from inventory_cache.engine import StockEngine
from inventory_cache.errors import RedisFull, ValidationError

PENDING_SECONDS = 60
MAX_KEY_LENGTH = 255
_PENDING = b"pending"


def valid_key(value: bytes) -> bool:
    return 1 <= len(value) <= MAX_KEY_LENGTH and all(0x21 <= c <= 0x7E for c in value)


def request_fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


class IdempotencyStore:
    """Records in Redis: `<fp> pending`, then `<fp> <status> <content-type>\\n<body>`.

    Redis keeps an answer for `ttl_seconds`, or only `redis_seconds` when that is shorter
    (the window finished orders stay, `INVENTORY_FINISHED_RETENTION_SECONDS`); then the
    answer is also written to PostgreSQL (`http_idempotency`, through the engine's
    archive), and a key Redis no longer knows is looked up there before the request runs.
    With the defaults (one day each) PostgreSQL is never asked.
    """

    def __init__(self, engine: StockEngine, ttl_seconds: int, redis_seconds: int = 0) -> None:
        self._engine = engine
        self._ttl_ms = ttl_seconds * 1000
        self._redis_ms = min(self._ttl_ms, redis_seconds * 1000 or self._ttl_ms)

    def _archive(self) -> OrderArchive | None:
        return self._engine.archive if self._redis_ms < self._ttl_ms else None

    def key(self, principal_id: str, idempotency_key: bytes) -> str:
        return self._engine.keys.http_idempotency(
            principal_id, hashlib.sha256(idempotency_key).hexdigest()[:40]
        )

    async def begin(self, key: str, fp: str) -> bytes | None:
        """None if this request now owns the key; else the record that is there."""
        batcher = self._engine.batcher
        while True:  # the record may lapse between SET NX and GET: claim again
            claimed = await batcher.command(
                "SET", key, fp.encode() + b" " + _PENDING, "NX", "PX", PENDING_SECONDS * 1000
            )
            if claimed:
                return await self._from_archive(key)
            record: bytes | None = await batcher.command("GET", key)
            if record is not None:
                return record

    async def _from_archive(self, key: str) -> bytes | None:
        """The answer PostgreSQL kept after Redis let it go; this request's claim is
        dropped then, as it will not run."""
        archive = self._archive()
        if archive is None:
            return None
        record = await archive.answer(key, self._engine.now())
        if record is not None:
            await self.abandon(key)
        return record

    async def finish(
        self, key: str, fp: str, status: int, content_type: bytes, body: bytes
    ) -> None:
        head = b"%s %d %s\n" % (fp.encode(), status, content_type)
        await self._engine.batcher.command("SET", key, head + body, "PX", self._redis_ms)
        if archive := self._archive():
            now = self._engine.now()
            await archive.keep_answer(
                key, (fp, status, content_type, body), now, now + self._ttl_ms
            )

    async def abandon(self, key: str) -> None:
        await self._engine.batcher.command("DEL", key)


def invalid_key() -> Response:
    detail = f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} visible ASCII characters"
    return problem_from(ValidationError(detail, field="Idempotency-Key"))


async def run_and_store(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    store: IdempotencyStore,
    key: str,
    fp: str,
) -> None:
    """Run the route with the key claimed; keep its answer if it is a 2xx."""
    status = 0
    content_type = b"application/json"
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status, content_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    content_type = value
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
        await send(message)

    try:
        await app(scope, receive, capture)
    except BaseException:
        await store.abandon(key)
        raise
    if 200 <= status < 300:
        try:
            await store.finish(key, fp, status, content_type, b"".join(chunks))
        except RedisFull:
            # The answer was sent; only its record did not fit. Without it a retry
            # runs again, and the operation's natural id replays the first result.
            await store.abandon(key)
    else:
        await store.abandon(key)


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replay_body(body, receive)


def answer_from(record: bytes, fp: str) -> ASGIApp:
    """The answer to a request whose key is already claimed: the stored one, or 409."""
    head, _, body = record.partition(b"\n")
    parts = head.split(b" ")
    if parts[0].decode() != fp:
        detail = "this Idempotency-Key was used with another request"
        return problem_from(IdempotencyKeyReused(detail))
    if parts[1] == _PENDING:
        detail = "a request with this Idempotency-Key is still running: retry shortly"
        return problem_from(RequestInProgress(detail))
    return _replay(int(parts[1]), parts[2], body)


def _replay(status: int, content_type: bytes, body: bytes) -> ASGIApp:
    async def replay(scope: Scope, receive: Receive, send: Send) -> None:
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"idempotent-replayed", b"true"),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return replay
