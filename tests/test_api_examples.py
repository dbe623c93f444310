"""Every answer in the OpenAPI document has an example, and the examples name the demo's
catalogue, so "Try it out" in /docs works on a fresh demo."""

from __future__ import annotations

from typing import Any

from inventory_cache.api.main import create_app
from inventory_cache.demo import CATALOGUE, KITS, LOCATIONS
from tests.support.services import make_settings

SCHEMA: dict[str, Any] = create_app(make_settings("unused")).openapi()
DEMO_SKUS = {item.sku for item in CATALOGUE} | set(KITS)
SKU_FIELDS = {"sku"}
LOCATION_FIELDS = {"location", "from_location", "to_location"}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return found


def examples_in(node: Any, inside: bool = False) -> list[tuple[str, Any]]:
    """(field, value) of every field inside an `example`/`examples` of the document."""
    out: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if inside:
                out.append((key, value))
            out += examples_in(value, inside or key in ("example", "examples"))
    elif isinstance(node, list):
        for item in node:
            out += examples_in(item, inside)
    return out


def test_every_successful_answer_has_an_example() -> None:
    missing = []
    for path, item in SCHEMA["paths"].items():
        for method, op in item.items():
            for status, answer in op["responses"].items():
                for media_type, media in answer.get("content", {}).items():
                    if not status.startswith("2") and "json" not in media_type:
                        continue
                    schema = resolve(media.get("schema", {}))
                    if not ({"example", "examples"} & (media.keys() | schema.keys())):
                        missing.append(f"{method.upper()} {path} {status}")

    assert missing == []


def test_examples_use_the_demo_catalogue() -> None:
    pairs = examples_in(SCHEMA)
    skus = {v for k, v in pairs if k in SKU_FIELDS and isinstance(v, str)}
    locations = {v for k, v in pairs if k in LOCATION_FIELDS and isinstance(v, str)}
    path_skus = {
        example
        for item in SCHEMA["paths"].values()
        for op in item.values()
        for param in op.get("parameters", [])
        if param["name"] == "sku"
        for example in param.get("schema", {}).get("examples", [])
    }

    assert skus and skus <= DEMO_SKUS, skus - DEMO_SKUS
    assert locations and locations <= set(LOCATIONS), locations - set(LOCATIONS)
    assert path_skus and path_skus <= DEMO_SKUS, path_skus
