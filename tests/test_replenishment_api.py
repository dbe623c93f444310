"""`GET /v1/replenishment`: the suggestion of the ledger's last 28 days, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from persistence.models import Movement, Policy, StockLevel
from tests.support.api import Api


async def test_replenishment_suggests_from_recent_sales(api: Api) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "op_id": f"ship:rp-{d}",
            "sku": "rp-A",
            "location": "north",
            "type": "ship",
            "reason": "ship",
            "ref": f"o{d}",
            "delta_on_hand": -3,
            "delta_locked": -3,
            "on_hand_after": 0,
            "locked_after": 0,
            "safety_stock_after": 0,
            "version": d,
            "created_at": now - timedelta(days=d, hours=1),
            "stream_id": f"{d}-0",
        }
        for d in range(28)
    ]
    with api.db.begin() as conn:
        conn.execute(insert(Movement), rows)
        conn.execute(
            insert(Policy),
            [
                {
                    "sku": "rp-A",
                    "location": "north",
                    "safety_stock": 4,
                    "reorder_point": 0,
                    "reorder_qty": 10,
                    "lead_time_days": 5,
                }
            ],
        )
        conn.execute(
            insert(StockLevel),
            [
                {
                    "sku": "rp-A",
                    "location": "north",
                    "on_hand": 12,
                    "locked": 2,
                    "safety_stock": 4,
                    "version": 1,
                }
            ],
        )
    read = api.auth("read")

    r = await api.client.get("/v1/replenishment?sku=rp-A", headers=read)
    short = await api.client.get(
        "/v1/replenishment?sku=rp-A&window_days=7&cover_days=0", headers=read
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["window_days"], body["cover_days"]) == (28, 14)
    # 84 sold in 28 days: 3 a day; rop = 3*5 + 4 = 19; position 10; qty = 19 + 42 - 10 = 51
    assert body["items"] == [
        {
            "sku": "rp-A",
            "location": "north",
            "sold": 84,
            "window_days": 28,
            "avg_daily_sales": 3.0,
            "lead_time_days": 5,
            "safety_stock": 4,
            "reorder_point": 19,
            "on_hand": 12,
            "locked": 2,
            "in_transit": 0,
            "position": 10,
            "suggested_qty": 51,
        }
    ]
    # 7 days, 21 sold: the same velocity; no cover: rop 19 - 10 = 9 < reorder_qty 10
    assert short.json()["items"][0]["suggested_qty"] == 10
    assert (await api.client.get("/v1/replenishment")).status_code == 401
    bad = await api.client.get("/v1/replenishment?window_days=0", headers=read)
    assert bad.status_code == 422
