"""`Idempotency-Key` on POST: the first 2xx answer is replayed to the same API key, another
request under the same key is 409 `idempotency_mismatch`, and keys never cross clients."""

from __future__ import annotations

from typing import Any

import pytest

from inventory_cache.api.idempotency import request_fingerprint
from inventory_cache.apikeys import create_key
from tests.support.api import Api

ORDER = {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}


def keyed(api: Api, scope: str, key: str) -> dict[str, str]:
    return {**api.auth(scope), "Idempotency-Key": key}


async def locked(api: Api, sku: str = "A") -> int:
    return (await api.engine.stock(sku)).locations["north"].locked


async def test_a_retry_gets_the_stored_first_answer_verbatim(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    headers = keyed(api, "checkout", "checkout-attempt-1")

    first = await api.client.post("/v1/reservations", json=ORDER, headers=headers)
    await api.client.post("/v1/reservations/o1/cancel", headers=api.auth("checkout"))
    retry = await api.client.post("/v1/reservations", json=ORDER, headers=headers)

    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert retry.status_code == 201 and retry.content == first.content
    assert retry.json()["status"] == "active"  # the stored answer, not today's state
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["content-type"] == "application/json"
    assert await locked(api) == 0


async def test_a_request_with_a_key_looks_its_api_key_up_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    auth = api.app.state.services.auth
    looked_up: list[str] = []
    original = auth.authenticate

    async def counted(token: str) -> Any:
        looked_up.append(token)
        return await original(token)

    monkeypatch.setattr(auth, "authenticate", counted)
    headers = keyed(api, "checkout", "checkout-attempt-once")

    first = await api.client.post("/v1/reservations", json=ORDER, headers=headers)
    assert first.status_code == 201 and len(looked_up) == 1
    retry = await api.client.post("/v1/reservations", json=ORDER, headers=headers)
    assert retry.headers["idempotent-replayed"] == "true" and len(looked_up) == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "extra", "status"),
    [
        ("POST", "/v1/reservations", ORDER, {"Idempotency-Key": "once-1"}, 201),
        ("POST", "/v1/reservations/o9/cancel", None, {"Idempotency-Key": "once-2"}, 404),
        ("POST", "/v1/reservations", b"{broken", {"Idempotency-Key": "once-3"}, 422),
        ("POST", "/v1/reservations", ORDER, {}, 201),
        ("PUT", "/v1/limits/A", {"per_customer": 2}, {}, 200),
    ],
)
async def test_every_request_looks_its_api_key_up_once(
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: Any,
    extra: dict[str, str],
    status: int,
) -> None:
    """Whatever asks who the caller is (the ASGI layer for `Idempotency-Key` or a body it
    refuses, the route's dependency), the key is looked up once per request."""
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    auth = api.app.state.services.auth
    looked_up: list[str] = []
    original = auth.authenticate

    async def counted(token: str) -> Any:
        looked_up.append(token)
        return await original(token)

    monkeypatch.setattr(auth, "authenticate", counted)
    headers = {**api.auth("admin"), "Content-Type": "application/json", **extra}
    content = body if isinstance(body, bytes) else None
    answer = await api.client.request(
        method,
        path,
        headers=headers,
        content=content,
        json=None if content is not None or body is None else body,
    )

    assert answer.status_code == status, answer.text
    assert looked_up == [api.keys["admin"]]


async def test_the_same_key_for_another_request_is_a_mismatch(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    headers = keyed(api, "admin", "k-1")
    await api.client.post("/v1/reservations", json=ORDER, headers=headers)

    other_body = await api.client.post(
        "/v1/reservations", json={**ORDER, "order_id": "o2"}, headers=headers
    )
    other_path = await api.client.post("/v1/reservations/o1/cancel", headers=headers)

    for r in (other_body, other_path):
        assert r.status_code == 409
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "idempotency_mismatch"
    assert await locked(api) == 2


async def test_the_same_body_in_another_key_order_or_spacing_is_the_same_request(
    api: Api,
) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    headers = {**keyed(api, "checkout", "k-2"), "content-type": "application/json"}

    first = await api.client.post(
        "/v1/reservations",
        content=b'{"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}',
        headers=headers,
    )
    retry = await api.client.post(
        "/v1/reservations",
        content=b'{"lines":[{"qty":2,"sku":"A"}],"order_id":"o1"}',
        headers=headers,
    )

    assert retry.content == first.content and retry.headers["idempotent-replayed"] == "true"


async def test_keys_are_scoped_to_the_api_key_that_sent_them(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    other, _ = create_key(api.db, name="other-shop", scopes=["checkout"])
    mine = keyed(api, "checkout", "shared-key")
    theirs = {"Authorization": f"Bearer {other}", "Idempotency-Key": "shared-key"}

    a = await api.client.post("/v1/reservations", json=ORDER, headers=mine)
    b = await api.client.post("/v1/reservations", json={**ORDER, "order_id": "o2"}, headers=theirs)

    assert a.status_code == 201 and b.status_code == 201
    assert b.json()["order_id"] == "o2" and "idempotent-replayed" not in b.headers
    assert await locked(api) == 4


async def test_refusals_are_not_stored_so_the_retry_runs_again(api: Api) -> None:
    """As with natural ids: a refused request changed nothing and may be retried."""
    headers = keyed(api, "checkout", "k-3")

    refused = await api.client.post("/v1/reservations", json=ORDER, headers=headers)
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    retried = await api.client.post("/v1/reservations", json=ORDER, headers=headers)

    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_stock"
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers


async def test_a_request_still_running_under_the_key_is_409_invalid_state(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    store = api.app.state.services.idempotency
    key_id = await _key_id(api, "checkout")
    body = b'{"lines":[{"qty":2,"sku":"A"}],"order_id":"o1"}'
    fp = request_fingerprint("POST", "/v1/reservations", b"", body)
    assert await store.begin(store.key(key_id, b"k-4"), fp) is None  # another request holds it

    r = await api.client.post("/v1/reservations", json=ORDER, headers=keyed(api, "checkout", "k-4"))

    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    assert await locked(api) == 0


async def _key_id(api: Api, scope: str) -> str:
    auth = api.app.state.services.auth
    principal = await auth.authenticate(api.keys[scope])
    assert principal is not None
    key_id: str = principal.key_id
    return key_id


async def test_stored_answers_expire_after_the_configured_ttl(api: Api) -> None:
    await api.engine.inbound(ref="po", sku="A", location="north", qty=10)
    await api.client.post("/v1/reservations", json=ORDER, headers=keyed(api, "checkout", "k-5"))
    (record,) = await api.engine.client.keys(f"{api.engine.keys.prefix}:idem:*")

    ttl = await api.engine.client.pttl(record)

    assert 86_390_000 < ttl <= 86_400_000


async def test_invalid_keys_are_422_and_unauthenticated_requests_store_nothing(
    api: Api,
) -> None:
    for bad in ("x" * 256, "has space", ""):
        r = await api.client.post(
            "/v1/reservations", json=ORDER, headers=keyed(api, "checkout", bad)
        )
        assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"
    anonymous = await api.client.post(
        "/v1/reservations", json=ORDER, headers={"Idempotency-Key": "k-6"}
    )

    assert anonymous.status_code == 401
    assert await api.engine.client.keys(f"{api.engine.keys.prefix}:idem:*") == []


async def test_the_header_is_documented_on_every_post(api: Api) -> None:
    schema: dict[str, Any] = (await api.client.get("/openapi.json")).json()
    posts = [op for item in schema["paths"].values() for m, op in item.items() if m == "post"]

    assert posts
    for op in posts:
        assert any(p["name"] == "Idempotency-Key" for p in op["parameters"])
        assert "idempotency_mismatch" in op["responses"]["409"]["description"]
