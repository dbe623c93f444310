"""The console's routes over HTTP (in process): the page and its assets, `GET /v1/me`,
`GET /v1/status`, `GET /v1/reconcile`; and the assets ship in the wheel. The browser
tests are in test_console_browser.py."""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from wms_simulator import WmsSimulator, serve

from inventory_cache.models import LineRequest
from tests.support.api import Api, Database, serving
from tests.support.clock import ManualClock

ROOT = Path(__file__).resolve().parents[1]
ASSETS = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


async def test_the_console_page_needs_no_key_and_loads_only_its_own_assets(api: Api) -> None:
    page = await api.client.get("/console")
    assets = {name: await api.client.get(f"/console/assets/{name}") for name in ASSETS}

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    referenced = set(re.findall(r'(?:src|href)="([^"#]+)"', page.text))
    assert referenced == {f"/console/assets/{name}" for name in ASSETS}
    assert {n: (r.status_code, r.headers["content-type"]) for n, r in assets.items()} == {
        n: (200, media) for n, media in ASSETS.items()
    }
    assert "http" not in assets["console.js"].text.replace("http://www.w3.org/2000/svg", "")


async def test_an_asset_is_revalidated_by_etag_and_an_unknown_one_is_404(api: Api) -> None:
    first = await api.client.get("/console/assets/console.js")
    again = await api.client.get(
        "/console/assets/console.js", headers={"If-None-Match": first.headers["etag"]}
    )
    missing = await api.client.get("/console/assets/..%2Fstatus.py")

    assert again.status_code == 304 and again.content == b""
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"


async def test_me_tells_the_keys_name_and_scopes(api: Api) -> None:
    read = await api.client.get("/v1/me", headers=api.auth("read"))
    admin = await api.client.get("/v1/me", headers=api.auth("admin"))
    anonymous = await api.client.get("/v1/me")

    assert read.json() == {"name": "read", "scopes": ["read"], "admin": False}
    assert admin.json() == {
        "name": "admin",
        "scopes": ["read", "checkout", "warehouse", "admin"],
        "admin": True,
    }
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"


@pytest.fixture
async def clocked_api(
    real_redis: Any, prefix: str, api_database: Database, clock: ManualClock
) -> AsyncIterator[Api]:
    async with serving(real_redis, prefix, api_database, clock=clock) as served:
        yield served


async def test_status_reports_each_part_and_the_sweeps_delay(
    clocked_api: Api, clock: ManualClock
) -> None:
    engine = clocked_api.engine
    await engine.client.xgroup_create(
        engine.keys.events(engine.keys.group_of("S")), "ledger", "0", mkstream=True
    )
    await engine.inbound(ref="in", sku="S", location="north", qty=5)
    await engine.reserve(order_id="o1", lines=[LineRequest("S", 2)], ttl_seconds=10)
    # Readiness and lag come from the process's background measurement: take one now.
    await clocked_api.app.state.services.status.refresh()
    on_time = (await clocked_api.client.get("/v1/status", headers=clocked_api.auth("read"))).json()
    clock.advance(14)
    late = (await clocked_api.client.get("/v1/status", headers=clocked_api.auth("read"))).json()
    forbidden = await clocked_api.client.get("/v1/status", headers=clocked_api.auth("checkout"))

    assert on_time == {
        "redis": "ready",
        "postgres": "up",
        "worker_lag_events": 2,  # no worker drains the stream in this test
        "expiry_sweep_delay_seconds": 0.0,
        "events_total": 2,
        "now_ms": clock.ms - 14_000,
    }
    assert late["expiry_sweep_delay_seconds"] == 4.0
    assert forbidden.status_code == 403


async def test_status_says_when_redis_is_not_loaded(api: Api) -> None:
    await api.engine.client.delete(api.engine.keys.ready(0))
    await api.app.state.services.status.refresh()  # what /v1/status reports of readiness

    body = (await api.client.get("/v1/status", headers=api.auth("read"))).json()

    assert body["redis"] == "not_loaded"
    assert body["postgres"] == "up"


async def test_reconcile_runs_are_listed_newest_first_for_admin_only(
    real_redis: Any, prefix: str, api_database: Database
) -> None:
    sim = WmsSimulator()
    sim.seed("L", "north", 3)
    sim.drift("L", "north", -1)
    server = serve(sim)
    url = f"http://127.0.0.1:{server.server_address[1]}/snapshot"
    try:
        async with serving(real_redis, prefix, api_database, wms_url=url) as served:
            await served.engine.inbound(ref="in", sku="L", location="north", qty=3)
            admin = served.auth("admin")
            first = (await served.client.post("/v1/reconcile", json={}, headers=admin)).json()
            second = (await served.client.post("/v1/reconcile", json={}, headers=admin)).json()
            listed = await served.client.get("/v1/reconcile?limit=2", headers=admin)
            refused = await served.client.get("/v1/reconcile", headers=served.auth("read"))
    finally:
        server.shutdown()
        server.server_close()

    items = listed.json()["items"]
    assert [i["run_id"] for i in items] == [second["run_id"], first["run_id"]]
    assert items[0]["summary"]["diffs"] == 1 and "diffs" not in items[0]
    assert set(items[0]) == {
        "run_id",
        "status",
        "mode",
        "source",
        "started_at",
        "finished_at",
        "summary",
    }
    assert refused.status_code == 403


def test_the_wheel_ships_the_consoles_assets(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("inventory_cache/console/static/")}

    source = ROOT / "inventory_cache" / "console" / "static"
    assert shipped == {f"inventory_cache/console/static/{p.name}" for p in source.iterdir()}
