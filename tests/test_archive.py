"""A finished order whose keys left Redis after the retention window is answered from
PostgreSQL exactly as Redis answered it: GET, a replayed reservation, cancel and ship."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from inventory_cache.models import ReservedLine
from tests.support import api as api_support
from tests.support.api import Api, let_the_window_pass, order_keys
from tests.support.postgres import drain_into_ledger
from tests.support.redis_state import skus_in_distinct_groups


def answer(r: httpx.Response) -> tuple[int, Any, str | None]:
    return r.status_code, r.json(), r.headers.get("idempotent-replayed")


async def test_a_finished_order_past_the_window_is_answered_from_postgresql_unchanged(
    api: Api, api_database: api_support.Database
) -> None:
    a, b = skus_in_distinct_groups(api.engine, 2)
    for sku in (a, b):
        stocked = await api.client.post(
            "/v1/inbound",
            json={"ref": "po", "sku": sku, "location": "north", "qty": 10},
            headers=api.auth("warehouse"),
        )
        assert stocked.status_code == 200
    checkout, warehouse = api.auth("checkout"), api.auth("warehouse")
    bodies = {
        "o-shipped": {
            "order_id": "o-shipped",
            "lines": [{"sku": b, "qty": 2}, {"sku": a, "qty": 1}],
        },
        "o-cancelled": {"order_id": "o-cancelled", "lines": [{"sku": a, "qty": 3}]},
    }
    for body in bodies.values():
        assert (await api.client.post("/v1/reservations", json=body, headers=checkout)).is_success
    assert (await api.client.post("/v1/reservations/o-shipped/ship", headers=warehouse)).is_success
    assert (
        await api.client.post("/v1/reservations/o-cancelled/cancel", headers=checkout)
    ).is_success

    async def ask(order_id: str) -> list[tuple[int, Any, str | None]]:
        other = {**bodies[order_id], "lines": [{"sku": a, "qty": 9}]}
        return [
            answer(await api.client.get(f"/v1/reservations/{order_id}", headers=checkout)),
            answer(
                await api.client.post("/v1/reservations", json=bodies[order_id], headers=checkout)
            ),
            answer(await api.client.post("/v1/reservations", json=other, headers=checkout)),
            answer(await api.client.post(f"/v1/reservations/{order_id}/cancel", headers=checkout)),
            answer(await api.client.post(f"/v1/reservations/{order_id}/ship", headers=warehouse)),
        ]

    from_redis = {order_id: await ask(order_id) for order_id in bodies}
    assert [s for s, _, _ in from_redis["o-shipped"]] == [200, 201, 409, 409, 200]
    assert [s for s, _, _ in from_redis["o-cancelled"]] == [200, 201, 409, 200, 409]
    assert "shipped" in from_redis["o-shipped"][3][1]["detail"]

    drain_into_ledger(api.engine.settings, api_database.url)
    for order_id in bodies:
        await let_the_window_pass(api, order_id)

    for order_id in bodies:
        assert await ask(order_id) == from_redis[order_id]
        assert await order_keys(api, order_id) == []  # the replays put nothing back
    levels = (await api.client.get(f"/v1/stock/{a}", headers=api.auth("read"))).json()
    assert levels["locations"]["north"]["locked"] == 0  # the retries locked nothing
    assert levels["locations"]["north"]["on_hand"] == 9


async def test_an_unknown_order_is_still_not_found_with_the_archive_asked(api: Api) -> None:
    r = await api.client.get("/v1/reservations/never-seen", headers=api.auth("checkout"))
    assert r.status_code == 404
    r = await api.client.post("/v1/reservations/never-seen/cancel", headers=api.auth("checkout"))
    assert r.status_code == 404


async def test_concurrent_lookups_of_new_order_ids_share_one_query() -> None:
    """Every reservation asks the archive first (a late retry of a finished order must
    not lock again): a query each would queue a flash sale on PostgreSQL."""
    from inventory_cache.archive import Coalesced

    asked: list[list[str]] = []

    async def fetch(order_ids: list[str]) -> set[str]:
        asked.append(order_ids)
        return {"o-7"}

    finished = Coalesced(fetch)
    found = await asyncio.gather(*(finished.contains(f"o-{i % 10}") for i in range(50)))

    assert found == [i % 10 == 7 for i in range(50)]
    assert asked == [[f"o-{i}" for i in range(10)]]


async def a_cancelled_order_in_the_ledger(
    api: Api, database: api_support.Database, sku: str, order_id: str
) -> None:
    """`order_id` reserved 2 of `sku` (stocked with 5 at north) and was cancelled; the
    worker has written it all. The SKU must be new to the module's ledger."""
    stocked = await api.client.post(
        "/v1/inbound",
        json={"ref": "po", "sku": sku, "location": "north", "qty": 5},
        headers=api.auth("warehouse"),
    )
    assert stocked.status_code == 200
    body = {"order_id": order_id, "lines": [{"sku": sku, "qty": 2}]}
    checkout = api.auth("checkout")
    assert (await api.client.post("/v1/reservations", json=body, headers=checkout)).is_success
    cancelled = await api.client.post(f"/v1/reservations/{order_id}/cancel", headers=checkout)
    assert cancelled.is_success
    drain_into_ledger(api.engine.settings, database.url)


async def test_the_archive_asks_postgresql_which_ids_are_finished_and_only_then_for_lines(
    api: Api, api_database: api_support.Database
) -> None:
    from inventory_cache.archive import OrderArchive

    sku = "archived-sku"
    await a_cancelled_order_in_the_ledger(api, api_database, sku, "o-done")

    archive = OrderArchive(api_database.engine, api.engine.keys)
    try:
        found = await asyncio.gather(*(archive.order(o) for o in ("o-new", "o-done", "o-x")))
    finally:
        await archive.aclose()

    assert found[0] is None and found[2] is None
    assert found[1] is not None
    assert (found[1].reservation.status, found[1].reservation.lines) == (
        "cancelled",
        [ReservedLine(sku=sku, qty=2, location="north")],
    )


def finish_order(conn: Any, order_id: str) -> None:
    """A finished order's row as the worker writes it, in `conn`'s transaction."""
    conn.execute(
        sa.text(
            "INSERT INTO reservations (order_id, status, expires_at, token, created_at,"
            " updated_at, finished_xid) VALUES (:o, 'cancelled', now(), 't', now(), now(),"
            " pg_current_xact_id()::text::bigint)"
        ),
        {"o": order_id},
    )


async def test_once_its_filter_is_read_the_archive_asks_postgresql_only_for_finished_ids(
    api: Api, api_database: api_support.Database
) -> None:
    """A new order id (every checkout's) is ruled out in memory; a finished one still asks
    and is found."""
    from inventory_cache.archive import OrderArchive

    await a_cancelled_order_in_the_ledger(api, api_database, "filtered-sku", "o-filtered")

    archive = OrderArchive(api_database.engine, api.engine.keys)
    try:
        assert archive.filter is not None
        unread = await archive.order("o-brand-new")
        await archive.filter.refresh()
        new, finished = await archive.order("o-brand-new"), await archive.order("o-filtered")
    finally:
        await archive.aclose()

    assert unread is None and new is None
    assert finished is not None and finished.reservation.status == "cancelled"
    assert archive.lookups == {"ruled_out": 1, "asked": 2}


async def test_the_filter_reads_a_finish_that_commits_after_a_later_one(
    api_database: api_support.Database,
) -> None:
    """Transactions commit out of the order of their ids: one that took its id first and
    committed last is read by the next refresh, not skipped by a watermark."""
    from inventory_cache.archive import FinishedFilter

    finished = FinishedFilter(api_database.url)
    try:
        await finished.refresh()
        with api_database.engine.connect() as slow:
            slow_tx = slow.begin()
            finish_order(slow, "o-committed-last")
            with api_database.engine.begin() as fast:
                finish_order(fast, "o-committed-first")
            await finished.refresh()
            seen_while_open = finished.rules_out("o-committed-last")
            slow_tx.commit()
        await finished.refresh()
        assert not finished.rules_out("o-committed-first")
        assert seen_while_open is True  # not committed yet: not finished
        assert not finished.rules_out("o-committed-last")
        assert finished.rules_out("o-never-taken")
    finally:
        await finished.aclose()


async def test_a_filter_not_refreshed_for_a_while_is_not_trusted(
    api_database: api_support.Database,
) -> None:
    """PostgreSQL away from this process (but not from the worker) must not leave a stale
    filter ruling out orders finished since: past `TRUST_S` the lookups ask again."""
    from inventory_cache.archive import TRUST_S, FinishedFilter

    now = [1000.0]
    finished = FinishedFilter(api_database.url, clock=lambda: now[0])
    try:
        assert not finished.rules_out("o-any")  # never read
        await finished.refresh()
        assert finished.rules_out("o-any")
        now[0] += TRUST_S - 0.5
        assert finished.rules_out("o-any")
        now[0] += 1.0
        assert not finished.rules_out("o-any")
    finally:
        await finished.aclose()


async def test_a_filter_holding_more_ids_than_it_was_sized_for_is_read_again_twice_as_large(
    api_database: api_support.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inventory_cache import archive
    from inventory_cache.archive import FinishedFilter

    monkeypatch.setattr(archive, "MIN_CAPACITY", 4)
    monkeypatch.setattr(archive, "LOAD_PAGE", 2)  # a full read goes page after page
    finished = FinishedFilter(api_database.url)
    try:
        await finished.refresh()
        first = finished.capacity
        with api_database.engine.begin() as conn:
            for i in range(first + 1):
                finish_order(conn, f"o-grow-{i}")
        await finished.refresh()  # reads them: now over capacity
        assert finished.ids > finished.capacity == first
        await finished.refresh()
        with api_database.engine.connect() as conn:
            total = conn.execute(
                sa.text("SELECT count(*) FROM reservations WHERE finished_xid IS NOT NULL")
            ).scalar_one()
        assert (finished.ids, finished.capacity) == (total, max(4, 2 * total))
        assert not any(finished.rules_out(f"o-grow-{i}") for i in range(first + 1))
    finally:
        await finished.aclose()


async def test_the_apis_archive_keeps_its_filter_read_and_counts_its_lookups(api: Api) -> None:
    """Started with the app: within a few refreshes a new order id costs no query."""
    assert api.engine.archive is not None and api.engine.archive.filter is not None
    for _ in range(100):
        if api.engine.archive.filter.rules_out("o-scraped"):
            break
        await asyncio.sleep(0.05)
    r = await api.client.get("/v1/reservations/o-scraped", headers=api.auth("checkout"))
    assert r.status_code == 404
    metrics = (await api.client.get("/metrics")).text
    assert 'inventory_archive_order_lookups_total{outcome="ruled_out"} 1.0' in metrics
    assert 'inventory_archive_filter_ids{of="capacity"}' in metrics


async def test_ids_asked_in_the_same_pass_of_the_event_loop_go_in_one_query() -> None:
    """Requests read from the sockets in one pass of the loop reach the archive one after
    another, some after the query task was scheduled: they still go together."""
    from inventory_cache.archive import Coalesced

    asked: list[list[str]] = []

    async def fetch(order_ids: list[str]) -> set[str]:
        asked.append(order_ids)
        return set()

    finished = Coalesced(fetch)

    async def a_moment_later() -> bool:
        await asyncio.sleep(0)
        return await finished.contains("o-2")

    answers = await asyncio.gather(finished.contains("o-1"), a_moment_later())
    assert list(answers) == [False, False]
    assert asked == [["o-1", "o-2"]]


async def test_a_lookup_postgresql_does_not_answer_is_given_up_and_the_next_asked_anew() -> None:
    from inventory_cache.archive import TIMEOUT_S, Coalesced

    asked: list[list[str]] = []

    async def fetch(order_ids: list[str]) -> set[str]:
        asked.append(order_ids)
        if len(asked) == 1:
            await asyncio.sleep(10)  # a connection that never answers
        return {"o-2"}

    finished = Coalesced(fetch)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await finished.contains("o-1")
    assert TIMEOUT_S <= time.monotonic() - start < 3 * TIMEOUT_S
    assert await finished.contains("o-2") is True
    assert asked == [["o-1"], ["o-2"]]


async def test_an_unreachable_archive_answers_unknown_and_is_not_asked_again_for_a_while(
    caplog: Any,
) -> None:
    """Checkout must not wait on PostgreSQL: a failed lookup pauses the archive."""
    from sqlalchemy import create_engine

    from inventory_cache.archive import PAUSE_S, OrderArchive
    from inventory_cache.keys import Keys

    archive = OrderArchive(create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"), Keys())
    assert await archive.order("o-1") is None
    assert "archive unavailable" in caplog.text
    start = time.monotonic()
    assert await archive.order("o-2") is None
    assert time.monotonic() - start < PAUSE_S / 10


async def test_a_finished_transfer_past_the_window_is_answered_from_postgresql_unchanged(
    api: Api, api_database: api_support.Database
) -> None:
    warehouse = api.auth("warehouse")
    stocked = await api.client.post(
        "/v1/inbound",
        json={"ref": "po", "sku": "case-b", "location": "north", "qty": 1000},
        headers=warehouse,
    )
    assert stocked.status_code == 200
    bodies = {
        "t-received": {
            "transfer_id": "t-received",
            "sku": "case-b",
            "from_location": "north",
            "to_location": "south",
            "qty": 100,
        },
        "t-cancelled": {
            "transfer_id": "t-cancelled",
            "sku": "case-b",
            "from_location": "north",
            "to_location": "south",
            "qty": 5,
        },
    }
    for body in bodies.values():
        assert (await api.client.post("/v1/transfers", json=body, headers=warehouse)).is_success
    for step in ("ship", "receive"):
        r = await api.client.post(f"/v1/transfers/t-received/{step}", headers=warehouse)
        assert r.is_success
    r = await api.client.post("/v1/transfers/t-cancelled/cancel", headers=warehouse)
    assert r.is_success

    async def ask(transfer_id: str) -> list[tuple[int, Any, str | None]]:
        other = {**bodies[transfer_id], "qty": 7}
        out = [answer(await api.client.get(f"/v1/transfers/{transfer_id}", headers=warehouse))]
        for body in (bodies[transfer_id], other):
            out.append(answer(await api.client.post("/v1/transfers", json=body, headers=warehouse)))
        for step in ("ship", "receive", "cancel"):
            r = await api.client.post(f"/v1/transfers/{transfer_id}/{step}", headers=warehouse)
            out.append(answer(r))
        return out

    from_redis = {transfer_id: await ask(transfer_id) for transfer_id in bodies}
    assert [s for s, _, _ in from_redis["t-received"]] == [200, 201, 409, 200, 200, 409]
    assert [s for s, _, _ in from_redis["t-cancelled"]] == [200, 201, 409, 409, 409, 200]

    drain_into_ledger(api.engine.settings, api_database.url)
    for transfer_id in bodies:
        await let_the_window_pass(api, transfer_id)

    for transfer_id in bodies:
        assert await ask(transfer_id) == from_redis[transfer_id]
        assert await order_keys(api, transfer_id) == []
    levels = (await api.client.get("/v1/stock/case-b", headers=api.auth("read"))).json()
    assert levels["locations"]["north"] == {
        "on_hand": 900,
        "locked": 0,
        "safety_stock": 0,
        "available": 900,
    }


async def test_an_idempotency_key_answer_kept_longer_than_the_window_is_replayed_from_postgresql(
    real_redis: Any, prefix: str, api_database: api_support.Database
) -> None:
    from sqlalchemy import text

    week, window = 7 * 86400, 60
    async with api_support.serving(
        real_redis,
        prefix,
        api_database,
        idempotency_key_ttl_seconds=week,
        finished_retention_seconds=window,
    ) as served:
        stocked = await served.client.post(
            "/v1/inbound",
            json={"ref": "po", "sku": "idem-sku", "location": "north", "qty": 5},
            headers=served.auth("warehouse"),
        )
        assert stocked.status_code == 200
        headers = {**served.auth("checkout"), "Idempotency-Key": "checkout-42"}
        body = {"order_id": "o-idem", "lines": [{"sku": "idem-sku", "qty": 1}]}
        first = await served.client.post("/v1/reservations", json=body, headers=headers)
        assert first.status_code == 201

        (record,) = [k async for k in real_redis.scan_iter(match=f"{prefix}:idem:*")]
        assert 0 < await real_redis.pttl(record) <= window * 1000
        with api_database.engine.connect() as conn:
            kept = conn.execute(
                text("SELECT status, expires_at - created_at FROM http_idempotency WHERE key = :k"),
                {"k": record.decode()},
            ).one()
        assert kept[0] == 201 and kept[1].total_seconds() > week - 60

        await real_redis.delete(record)  # the window passed
        again = await served.client.post("/v1/reservations", json=body, headers=headers)
        assert (again.status_code, again.content) == (201, first.content)
        assert again.headers["idempotent-replayed"] == "true"
        assert not await real_redis.exists(record)  # the replay's claim was dropped

        other = {**body, "lines": [{"sku": "idem-sku", "qty": 2}]}
        mismatch = await served.client.post("/v1/reservations", json=other, headers=headers)
        assert mismatch.status_code == 409 and mismatch.json()["code"] == "idempotency_mismatch"
        stock = await served.client.get("/v1/stock/idem-sku", headers=served.auth("read"))
        assert stock.json()["locations"]["north"]["locked"] == 1


async def test_with_the_default_settings_idempotency_key_answers_never_reach_postgresql(
    api: Api, api_database: api_support.Database
) -> None:
    from sqlalchemy import text

    headers = {**api.auth("warehouse"), "Idempotency-Key": "inbound-1"}
    r = await api.client.post(
        "/v1/inbound",
        json={"ref": "po-9", "sku": "sku-d", "location": "north", "qty": 1},
        headers=headers,
    )
    assert r.status_code == 200
    with api_database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM http_idempotency WHERE key LIKE :p"),
            {"p": f"{api.engine.keys.prefix}:%"},
        ).scalar_one()
    assert rows == 0


async def test_on_the_embedded_sqlite_the_archive_answers_without_error(
    tmp_path: Path, caplog: Any
) -> None:
    from inventory_cache.archive import OrderArchive
    from inventory_cache.keys import Keys
    from persistence.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate(url)
    db = make_engine(url)
    try:
        archive = OrderArchive(db, Keys())
        assert await archive.order("o-1") is None
    finally:
        db.dispose()
    assert "archive unavailable" not in caplog.text
