"""Property-based fuzzing of the served API from its own /openapi.json (schemathesis).

A real uvicorn on real Redis and PostgreSQL gets schema-valid and schema-invalid requests
for every documented operation, with an admin key: no answer may be a 5xx, and every
answer must be documented (status, content type, body schema, headers). Invalid input
must be refused with a 4xx. Bounded: a few dozen examples per operation, no shrinking.
The SSE stream (`GET /v1/events`) never ends, so it is left to its own tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inventory_cache.api.main import create_app
from inventory_cache.engine import StockEngine
from tests.support.api import Database, server_env, uvicorn_server
from tests.support.services import REDIS_URL, make_settings, need_redis

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


async def _stock(prefix: str) -> None:
    client = aredis.Redis.from_url(REDIS_URL)
    engine = StockEngine(client, make_settings(prefix))
    await engine.mark_ready()
    for sku in ("phone-a", "case-b", "0"):
        await engine.inbound(ref="seed", sku=sku, location="north", qty=50)
    await client.aclose()


@pytest.fixture(scope="module")
def served(api_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fully configured server: stock loaded, and a WMS snapshot for reconciliations."""
    need_redis()
    prefix = "t" + uuid.uuid4().hex[:10]
    asyncio.run(_stock(prefix))
    wms = tmp_path_factory.mktemp("wms") / "snapshot.csv"
    wms.write_text("sku,location,on_hand\nphone-a,north,50\n")
    env = server_env(prefix, api_database.url, INVENTORY_WMS_CSV_PATH=str(wms))
    try:
        with uvicorn_server(env) as url:
            yield url
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def api_schema(served: str, api_database: Database) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {api_database.keys['admin']}"},
            "request-timeout": 10,
        }
    )
    return schemathesis.openapi.from_url(f"{served}/openapi.json", config=config)


def operations() -> list[Any]:
    """Every documented operation, known before any server runs (one test each)."""
    paths = create_app(make_settings("unused")).openapi()["paths"]
    return sorted(
        f"{method.upper()} {path}"
        for path, item in paths.items()
        for method in item
        if path != "/v1/events"
    )


@pytest.mark.parametrize("operation", operations())
def test_every_answer_is_documented_and_none_is_a_server_error(
    api_schema: schemathesis.BaseSchema, operation: str
) -> None:
    method, path = operation.split(" ", 1)
    op = api_schema[path][method]
    cases = st.one_of(
        op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
    )

    @given(case=cases)
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz()
