"""The OpenAPI document is complete: every operation summarised, its errors documented as
problem+json, its bodies and answers with examples, its key requirement declared."""

from __future__ import annotations

from typing import Any

import pytest

from inventory_cache.api.main import create_app
from tests.support.services import make_settings

SCHEMA: dict[str, Any] = create_app(make_settings("unused")).openapi()

# The operations this area serves (others' routes have their own tests).
MINE = [
    ("get", "/v1/availability/{sku}"),
    ("get", "/v1/availability"),
    ("get", "/v1/stock/{sku}"),
    ("post", "/v1/inbound"),
    ("post", "/v1/adjustments"),
    ("post", "/v1/returns"),
    ("get", "/v1/movements"),
    ("post", "/v1/reservations"),
    ("get", "/v1/reservations/{order_id}"),
    ("post", "/v1/reservations/{order_id}/cancel"),
    ("post", "/v1/reservations/{order_id}/ship"),
    ("post", "/v1/transfers"),
    ("get", "/v1/transfers/{transfer_id}"),
    ("post", "/v1/transfers/{transfer_id}/ship"),
    ("post", "/v1/transfers/{transfer_id}/receive"),
    ("post", "/v1/transfers/{transfer_id}/cancel"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/ping"),
]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return found


def has_example(content: dict[str, Any]) -> bool:
    return any(
        "example" in media or "examples" in media or "examples" in resolve(media.get("schema", {}))
        for media in content.values()
    )


@pytest.mark.parametrize(("method", "path"), MINE)
def test_each_operation_is_summarised_with_examples(method: str, path: str) -> None:
    op = SCHEMA["paths"][path][method]

    assert op["summary"]
    if "requestBody" in op:
        assert has_example(op["requestBody"]["content"])
    success = next(r for s, r in op["responses"].items() if s.startswith("2"))
    if path != "/metrics":
        assert has_example(success["content"])


@pytest.mark.parametrize(("method", "path"), MINE)
def test_errors_are_problem_json_and_keyed_routes_declare_the_bearer_scheme(
    method: str, path: str
) -> None:
    op = SCHEMA["paths"][path][method]
    errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}

    for status, response in errors.items():
        (media,) = response["content"]
        assert media == "application/problem+json", status
        assert response["content"][media]["schema"] == {"$ref": "#/components/schemas/Problem"}
    keyed = not path.startswith(("/healthz", "/readyz", "/metrics", "/v1/ping"))
    assert ("401" in errors) == keyed
    assert (op.get("security") == [{"bearer": []}]) == keyed
    if "requestBody" in op:
        assert {"413", "415", "422"} <= errors.keys()


def test_request_bodies_are_strict_in_the_schema_too() -> None:
    schemas = SCHEMA["components"]["schemas"]
    for name in ("InboundIn", "AdjustmentIn", "ReturnIn", "ReservationIn", "LineIn", "TransferIn"):
        assert schemas[name]["additionalProperties"] is False, name
    qty = schemas["InboundIn"]["properties"]["qty"]
    assert (qty["type"], qty["minimum"], qty["maximum"]) == ("integer", 1, 1_000_000)
    assert schemas["ReservationIn"]["properties"]["lines"]["maxItems"] == 100
    assert {"delta", "set_on_hand"} == {
        req for alt in schemas["AdjustmentIn"]["oneOf"] for req in alt["required"]
    }


def test_the_document_states_one_body_rule_for_every_route() -> None:
    description = SCHEMA["info"]["description"]

    for rule in (
        "JSON in UTF-8, on every route alike",
        "a byte order mark, UTF-16",
        '422\n`validation_error` with `field: "body"`, before anything is applied',
        "401 first, whatever its body",
        "is 415 `unsupported_media_type`",
    ):
        assert rule in description
