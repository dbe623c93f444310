"""FastAPI's own OpenTelemetry instrumentation is off unless `INVENTORY_OPENTELEMETRY`
asks for it: left on, FastAPI asks the OpenTelemetry API for its providers on every
request (8% of the trivial route's CPU), for a service that ships no OpenTelemetry SDK."""

from __future__ import annotations

import httpx
import opentelemetry.trace
import pytest

from inventory_cache.api.main import create_app
from tests.support.services import make_settings


async def providers_asked(monkeypatch: pytest.MonkeyPatch, **settings: bool) -> int:
    asked = 0
    real = opentelemetry.trace.get_tracer_provider

    def counting() -> opentelemetry.trace.TracerProvider:
        nonlocal asked
        asked += 1
        return real()

    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", counting)
    app = create_app(make_settings("telemetry-test", **settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for _ in range(3):
            assert (await client.get("/v1/ping")).status_code == 200
    return asked


async def test_requests_do_not_ask_for_an_opentelemetry_provider_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await providers_asked(monkeypatch) == 0


async def test_the_setting_gives_fastapi_its_instrumentation_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await providers_asked(monkeypatch, opentelemetry=True) >= 3
