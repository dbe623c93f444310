"""Redis memory: a full Redis refuses writes cleanly, and one that may evict is refused.

Both need a Redis of their own (a small `maxmemory`, another `maxmemory-policy`), so each
test starts a private redis-server on a free loopback port (the `private_redis` fixture).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from inventory_cache.connection import make_async_redis
from inventory_cache.engine import StockEngine
from inventory_cache.redis_policy import EvictionPolicyRefused
from tests.support.api import CLI, Database, server_env, serving, uvicorn_server
from tests.support.postgres import drain_into_ledger
from tests.support.services import make_settings

pytestmark = pytest.mark.slow

SKU = "mem-sku"


def _mark_ready(url: str, prefix: str) -> None:
    async def mark() -> None:
        client = make_async_redis(make_settings(prefix, redis_url=url, slot_groups=16))
        try:
            await StockEngine(client, make_settings(prefix, slot_groups=16)).mark_ready()
        finally:
            await client.aclose()

    asyncio.run(mark())


def test_a_full_redis_answers_every_refused_write_with_503_and_keeps_reading(
    private_redis: tuple[str, Any], api_database: Database, prefix: str
) -> None:
    url, admin = private_redis
    _mark_ready(url, prefix)
    env = server_env(prefix, api_database.url, INVENTORY_REDIS_URL=url)
    checkout = {"Authorization": f"Bearer {api_database.keys['checkout']}"}
    warehouse = {"Authorization": f"Bearer {api_database.keys['warehouse']}"}
    reader = {"Authorization": f"Bearer {api_database.keys['read']}"}
    with uvicorn_server(env) as base, httpx.Client(base_url=base, timeout=30) as http:
        stocked = http.post(
            "/v1/inbound",
            headers=warehouse,
            json={"ref": "po-1", "sku": SKU, "location": "north", "qty": 1_000_000},
        )
        assert stocked.status_code == 200
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + 1_000_000)

        accepted: list[str] = []
        statuses: Counter[int] = Counter()
        refused_in_a_row = 0
        i = 0
        # Load until Redis is full: twenty refusals in a row (any transport error, a
        # dropped connection included, fails the test by raising).
        while refused_in_a_row < 20 and i < 50_000:
            order = f"o-{i}"
            headers = {**checkout, "Idempotency-Key": f"k-{i}"} if i % 3 == 0 else checkout
            r = http.post(
                "/v1/reservations",
                headers=headers,
                json={"order_id": order, "lines": [{"sku": SKU, "qty": 1}]},
            )
            statuses[r.status_code] += 1
            if r.status_code == 201:
                accepted.append(order)
                refused_in_a_row = 0
            else:
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                body = r.json()
                assert body["code"] == "not_ready"
                assert "Redis memory is full" in body["detail"]
                refused_in_a_row += 1
            i += 1
        assert set(statuses) == {201, 503}, statuses
        assert len(accepted) > 100

        # Full: every other kind of write is refused the same way...
        cancel = http.post(f"/v1/reservations/{accepted[0]}/cancel", headers=checkout)
        assert cancel.status_code == 503 and "Redis memory" in cancel.json()["detail"]
        inbound = http.post(
            "/v1/inbound",
            headers=warehouse,
            json={"ref": "po-2", "sku": SKU, "location": "north", "qty": 5},
        )
        assert inbound.status_code == 503 and inbound.json()["code"] == "not_ready"
        # ...while reads go on, and readiness still holds (reads are served).
        avail = http.get(f"/v1/availability/{SKU}", headers=reader)
        assert avail.status_code == 200, avail.text
        assert avail.json()["available"] == 1_000_000 - len(accepted)
        assert http.get(f"/v1/stock/{SKU}", headers=reader).status_code == 200
        got = http.get(f"/v1/reservations/{accepted[-1]}", headers=checkout)
        assert got.status_code == 200 and got.json()["status"] == "active"
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        metrics = http.get("/metrics").text
        refusals = next(
            line for line in metrics.splitlines() if line.startswith("inventory_redis_oom_refusals")
        )
        assert float(refusals.split()[-1]) >= statuses[503] + 2

        # Memory raised: the refused writes go through, and nothing was half-applied.
        admin.config_set("maxmemory", 0)
        assert http.post(f"/v1/reservations/{accepted[0]}/cancel", headers=checkout).is_success

    settings = make_settings(prefix, redis_url=url, slot_groups=16)
    drain_into_ledger(settings, api_database.url)
    verify = subprocess.run([CLI, "verify", "--wait", "5"], env=env, capture_output=True)
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()
    with api_database.engine.connect() as conn:
        in_ledger = {
            row[0]
            for row in conn.execute(
                text("SELECT order_id FROM reservations WHERE order_id LIKE 'o-%'")
            )
        }
        locked = conn.execute(
            text("SELECT locked FROM stock_levels WHERE sku = :sku"), {"sku": SKU}
        ).scalar_one()
    assert in_ledger == set(accepted)
    assert locked == len(accepted) - 1  # the one cancelled after memory was raised


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_a_redis_that_may_evict_is_refused_at_start_up_naming_the_setting(
    private_redis: tuple[str, Any], api_database: Database, prefix: str, policy: str
) -> None:
    url, admin = private_redis
    admin.config_set("maxmemory-policy", policy)
    env = server_env(prefix, api_database.url, INVENTORY_REDIS_URL=url)
    commands = [["serve", "--port", "1"], ["worker"], ["scheduler"], ["warmup"]]
    if policy != "volatile-lru":
        commands = commands[:2]  # the same check: two processes suffice to show it
    for command in commands:
        run = subprocess.run([CLI, *command], env=env, capture_output=True, timeout=120)
        assert run.returncode == 2, (command, run.stderr.decode())
        lines = run.stderr.decode().strip().splitlines()
        assert len(lines) == 1, (command, lines)
        assert f"maxmemory-policy is '{policy}'" in lines[0]
        assert lines[0].endswith("set maxmemory-policy noeviction")


async def test_an_app_refuses_to_start_and_readyz_refuses_once_redis_may_evict(
    private_redis: tuple[str, Any], api_database: Database, prefix: str
) -> None:
    url, admin = private_redis
    client: Any = make_async_redis(make_settings(prefix, redis_url=url))
    try:
        admin.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(EvictionPolicyRefused, match="maxmemory-policy"):
            async with serving(client, prefix, api_database):
                pass
        admin.config_set("maxmemory-policy", "noeviction")
        async with serving(client, prefix, api_database) as api:
            assert (await api.client.get("/readyz")).status_code == 200
            admin.config_set("maxmemory-policy", "volatile-lru")  # changed at run time
            # /readyz answers from the background measurement: take the next one now.
            await api.app.state.services.status.refresh()
            r = await api.client.get("/readyz")
            assert r.status_code == 503
            body = orjson.loads(r.content)
            assert body["code"] == "not_ready"
            assert "maxmemory-policy is 'volatile-lru'" in body["detail"]
            assert "noeviction" in body["detail"]
    finally:
        await client.aclose()


async def test_a_redis_without_config_is_warned_about_and_used(
    api_database: Database, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis may disable CONFIG: the policy cannot be read, so warn and go on."""
    from redis.exceptions import ResponseError

    from inventory_cache.redis_policy import policy_refusal

    class NoConfig:
        async def config_get(self, *_: Any, **__: Any) -> Any:
            raise ResponseError("unknown command 'CONFIG'")

    assert await policy_refusal(NoConfig()) is None
    assert "cannot read Redis maxmemory-policy" in caplog.text
    assert "noeviction" in caplog.text


def test_the_sizing_script_measures_every_unit_on_a_private_redis() -> None:
    """2,000 of each unit: with 400, a one-off step of ~300 kB in Redis's used_memory (the
    same at every run, so an allocation of Redis's own rather than per unit) fell inside
    the three-line phase once the reserve scripts grew, and read as a negative size."""
    import json
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "redis_sizing.py"
    run = subprocess.run(
        [sys.executable, str(script), "--skus", "2000", "--n", "2000"],
        capture_output=True,
        timeout=300,
        check=True,
    )
    sizes = json.loads(run.stdout)["bytes"]
    assert set(sizes) == {
        "sku_location",
        "stream_entry",
        "movement_idempotency_record",
        "active_reservation_one_line",
        "active_reservation_added_line",
        "finished_order_in_window",
        "idempotency_key_record",
    }
    assert all(20 < b < 5000 for b in sizes.values()), sizes
