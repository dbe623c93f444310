"""The OpenAPI document, completed with what the middlewares add to every route.

Routes declare their own errors (`problem_responses`); this adds, once for all routes
including those other areas add later: errors as `application/problem+json`, 413 and 415
on every operation with a body, the `Idempotency-Key` header (with its 409) on every
POST, the bearer scheme on every operation that may answer 401, and, when the rate limit
is on, 429 (with `Retry-After`) on those same operations. So the document stays true
without each route repeating it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from inventory_cache.api.idempotency import MAX_KEY_LENGTH
from inventory_cache.api.problems import DESCRIPTIONS, PROBLEM_JSON, example
from inventory_cache.api.schemas.problem import Problem

IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the first 2xx answer is stored (24 h) and replayed, "
    "with `Idempotent-Replayed: true`, to the same API key; the same key with another "
    "request is 409 `idempotency_mismatch`.",
    "schema": {"type": "string", "pattern": f"^[\\x21-\\x7e]{{1,{MAX_KEY_LENGTH}}}$"},
}
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`inventory-cache keys create`): `Authorization: Bearer invk_...`",
}
RETRY_AFTER = {
    "description": "Whole seconds until this API key may send again.",
    "schema": {"type": "integer", "minimum": 1},
}
_MISMATCH = " Also `idempotency_mismatch`: the Idempotency-Key was used with another request."
_REF = "#/components/schemas/{model}"
# Bodies of routes that read them themselves (`deps.parse_body`), so FastAPI does not
# see them: their schemas are added to the components here.
_BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its JSON body itself."""
    _BODIES[model.__name__] = model
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _problem_content(content: dict[str, Any], status: int) -> dict[str, Any]:
    """Error bodies are problem+json, whatever the route answers when it succeeds: fold in
    what FastAPI put under the route's own media type (application/json, or
    text/event-stream for the live feed)."""
    body: dict[str, Any] = {}
    for media, value in content.items():
        if media != PROBLEM_JSON:
            body.update(value)
    body.update(content.get(PROBLEM_JSON, {}))
    body.setdefault("schema", {"$ref": "#/components/schemas/Problem"})
    if status in DESCRIPTIONS:
        body.setdefault("example", example(status))
    return {PROBLEM_JSON: body}


def complete(schema: dict[str, Any], *, rate_limited: bool = False) -> dict[str, Any]:
    """`rate_limited`: INVENTORY_RATE_LIMIT_PER_SECOND is on, so keyed operations may 429."""
    for path_item in schema.get("paths", {}).values():
        for method, op in path_item.items():
            responses = op.setdefault("responses", {})
            if "requestBody" in op:
                for status in (413, 415):
                    responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            if method == "post":
                op.setdefault("parameters", []).append(dict(IDEMPOTENCY_PARAMETER))
                conflict = responses.setdefault("409", {"description": DESCRIPTIONS[409]})
                conflict["description"] = conflict["description"].rstrip() + _MISMATCH
                if "422" not in responses:
                    responses["422"] = {"description": DESCRIPTIONS[422]}
            if "401" in responses:
                op.setdefault("security", [{"bearer": []}])
                if rate_limited:
                    limited = responses.setdefault("429", {"description": DESCRIPTIONS[429]})
                    limited.setdefault("headers", {})["Retry-After"] = dict(RETRY_AFTER)
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = _problem_content(response.get("content", {}), int(status))
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = BEARER
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [Problem, *_BODIES.values()]
    for model in models:
        model_schema = model.model_json_schema(ref_template=_REF)
        for name, sub in model_schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.setdefault(model.__name__, model_schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI, *, rate_limited: bool = False) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                ),
                rate_limited=rate_limited,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
