#!/usr/bin/env python
"""A realistic sales history: demand, stock and the ledger rows a shop would have made.

Every (sku, location) gets a demand class (40% smooth, 15% erratic, 30% intermittent,
15% lumpy), a day-of-week profile with a weekend peak of its own strength, a linear trend
(-30% to +60% over the period), a mild yearly swell, promotions (regular sellers: about
four one-week promotions a year at 1.5-3x) and its own stock: an (s, S) reorder policy
with a 3-10 day lead time where one delivery in twelve is late by one to three weeks,
so stockouts happen. Sales are demand capped by what is on the shelf; what demand went
unmet is kept (`demand` vs `sold`), so a bench can score forecasts against the truth.

    .venv/bin/python scripts/gen_sales_history.py --database-url postgresql://... \\
        --skus 1000 --locations 2 --days 730

writes that history into the ledger: a `pos_sale` row per selling day, an `inbound` row
per delivery, a restocked `pos_return` now and then, each with its levels after, exactly
as the write-behind worker records a till's events (same columns, types, reasons, one
version sequence per SKU), then the final `stock_levels`. Not through the API: the API
stamps every movement with the time it happens, so two years of history cannot be told
to it in less than two years (and 1.5M sale events over HTTP would be the bench of the
API, not of the forecast). Rows are COPYed (tens of thousands a second); `--truncate`
empties the movements and stock levels of the target database first.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

CLASSES = ("smooth", "erratic", "intermittent", "lumpy")
CLASS_SHARE = (0.40, 0.15, 0.30, 0.15)


@dataclass
class Scenario:
    """Series x days: latent demand, units sold, closing on_hand, deliveries."""

    keys: list[tuple[str, str]]
    start: date
    true_class: list[str]
    demand: np.ndarray[Any, np.dtype[np.int64]]
    sold: np.ndarray[Any, np.dtype[np.int64]]
    returned: np.ndarray[Any, np.dtype[np.int64]]
    received: np.ndarray[Any, np.dtype[np.int64]]
    close: np.ndarray[Any, np.dtype[np.int64]]
    opening: np.ndarray[Any, np.dtype[np.int64]]
    lead_time: np.ndarray[Any, np.dtype[np.int64]]

    @property
    def stockout(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Days the shelf was empty at some point (opened at 0 or sold out), as the
        ledger shows them (`demand.py`)."""
        prev = np.concatenate([self.opening[:, None], self.close[:, :-1]], axis=1)
        return np.asarray((prev <= 0) | (self.close <= 0))


def demand_rates(
    rng: np.random.Generator, n: int, days: int
) -> tuple[list[str], np.ndarray[Any, Any]]:
    """(class of each series, expected demand per day) before the noise of each class."""
    cls = rng.choice(len(CLASSES), size=n, p=CLASS_SHARE)
    t = np.arange(days)
    base = np.where(cls <= 1, rng.lognormal(1.3, 0.8, n), 1.0)
    strength = rng.uniform(0.1, 0.9, n)
    shape = np.array([0.85, 0.8, 0.85, 0.95, 1.15, 1.45, 0.95])
    start_dow = 0
    dow = 1 + strength[:, None] * (shape[(t + start_dow) % 7][None, :] - 1)
    trend = 1 + rng.uniform(-0.3, 0.6, n)[:, None] * t[None, :] / days
    yearly = 1 + 0.12 * np.sin(2 * np.pi * (t[None, :] / 365.25 + rng.uniform(0, 1, n)[:, None]))
    promo = np.ones((n, days))
    for i in np.flatnonzero(cls <= 1):
        for s in rng.choice(max(1, days - 7), size=max(1, days // 90), replace=False):
            promo[i, s : s + 7] *= rng.uniform(1.5, 3.0)
    return [CLASSES[c] for c in cls], base[:, None] * dow * trend * yearly * promo


def generate(
    *, skus: int, locations: int, days: int, seed: int = 1, start: date | None = None
) -> Scenario:
    rng = np.random.default_rng(seed)
    keys = [(f"SKU-{s:05d}", f"loc-{loc}") for s in range(skus) for loc in range(locations)]
    n = len(keys)
    classes, rate = demand_rates(rng, n, days)
    cls = np.array([CLASSES.index(c) for c in classes])
    demand = np.zeros((n, days), dtype=np.int64)
    smooth, erratic = cls == 0, cls == 1
    demand[smooth] = rng.poisson(rate[smooth])
    shape = 1.2  # gamma-Poisson: variance far above the mean
    demand[erratic] = rng.poisson(rng.gamma(shape, rate[erratic] / shape))
    sparse = cls >= 2
    prob = rng.uniform(0.04, 0.3, n)[:, None] * np.clip(
        rate / rate.mean(axis=1, keepdims=True), 0.2, 3
    )
    hit = rng.random((n, days)) < np.clip(prob, 0, 1)
    small = 1 + rng.poisson(0.8, (n, days))
    big = 1 + rng.negative_binomial(1, 0.2, (n, days))
    sizes = np.where((cls == 3)[:, None], big, small)
    demand[sparse] = (hit * sizes)[sparse]

    lead = rng.integers(3, 11, n)
    mean_d = np.maximum(demand.mean(axis=1), 0.05)
    reorder = np.ceil(mean_d * lead * rng.uniform(0.7, 1.4, n)).astype(np.int64)
    up_to = reorder + np.ceil(mean_d * rng.uniform(10, 30, n)).astype(np.int64) + 1
    on_hand = up_to.copy()
    opening = on_hand.copy()
    pipeline: dict[int, dict[int, int]] = {}
    on_order = np.zeros(n, dtype=np.int64)
    sold = np.zeros((n, days), dtype=np.int64)
    received = np.zeros((n, days), dtype=np.int64)
    close = np.zeros((n, days), dtype=np.int64)
    for d in range(days):
        arriving = pipeline.pop(d, {})
        for i, q in arriving.items():
            received[i, d] += q
            on_hand[i] += q
            on_order[i] -= q
        s = np.minimum(demand[:, d], on_hand)
        sold[:, d] = s
        on_hand -= s
        close[:, d] = on_hand
        need = np.flatnonzero(on_hand + on_order <= reorder)
        late = rng.random(need.size) < 1 / 12
        for i, is_late in zip(need.tolist(), late.tolist(), strict=True):
            qty = int(up_to[i] - on_hand[i] - on_order[i])
            when = d + int(lead[i]) + (int(rng.integers(7, 22)) if is_late else 0)
            pipeline.setdefault(when, {})
            pipeline[when][int(i)] = pipeline[when].get(int(i), 0) + qty
            on_order[i] += qty
    returned = ((rng.random((n, days)) < 0.01) & (sold > 0)).astype(np.int64)
    close = close + np.cumsum(returned, axis=1)
    start = start or (datetime.now(UTC).date() - timedelta(days=days))
    return Scenario(keys, start, classes, demand, sold, returned, received, close, opening, lead)


def ledger_copy(sc: Scenario) -> tuple[io.StringIO, list[tuple[str, str, int, int]]]:
    """The movements as COPY text, and the final (sku, location, on_hand, version)."""
    buf = io.StringIO()
    version: dict[str, int] = {}
    final = []
    for i, (sku, loc) in enumerate(sc.keys):
        on_hand = int(sc.opening[i])
        v = version.get(sku, 0)
        events: list[tuple[int, str, int, int]] = [(-1, "inbound", on_hand, 0)]
        for d in np.flatnonzero(sc.received[i] | sc.sold[i] | sc.returned[i]).tolist():
            if sc.received[i, d]:
                events.append((int(d), "inbound", int(sc.received[i, d]), 7))
            if sc.sold[i, d]:
                events.append((int(d), "pos_sale", -int(sc.sold[i, d]), 13))
            if sc.returned[i, d]:
                events.append((int(d), "pos_return", int(sc.returned[i, d]), 16))
        on_hand = 0
        for d, kind, delta, hour in events:
            v += 1
            on_hand += delta
            at = datetime.combine(sc.start + timedelta(days=d), datetime.min.time(), tzinfo=UTC)
            at += timedelta(hours=hour)
            reason = {"inbound": "inbound", "pos_sale": "sale", "pos_return": "return"}[kind]
            ref = f"gen-{kind}-{loc}-{d}"
            buf.write(
                f"{kind}:{sku}:{ref}\t{sku}\t{loc}\t{kind}\t{reason}\t{ref}\t{delta}\t0\t"
                f"{on_hand}\t0\t0\t{v}\t{at.isoformat()}\tgen-{v}\n"
            )
        version[sku] = v
        final.append((sku, loc, on_hand, v))
    buf.seek(0)
    return buf, final


def write_ledger(database_url: str, sc: Scenario, *, truncate: bool = False) -> int:
    """COPY the scenario into `movements` and set `stock_levels`; returns rows written."""
    import psycopg

    from persistence.db import libpq_url

    buf, final = ledger_copy(sc)
    cols = (
        "op_id, sku, location, type, reason, ref, delta_on_hand, delta_locked, "
        "on_hand_after, locked_after, safety_stock_after, version, created_at, stream_id"
    )
    rows = 0
    with psycopg.connect(libpq_url(database_url)) as conn:
        if truncate:
            conn.execute("TRUNCATE movements, stock_levels")
        with conn.cursor().copy(f"COPY movements ({cols}) FROM STDIN") as copy:
            while chunk := buf.read(1 << 20):
                copy.write(chunk)
        rows = conn.execute("SELECT count(*) FROM movements").fetchone()[0]  # type: ignore[index]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stock_levels (sku, location, on_hand, locked, safety_stock, version) "
                "VALUES (%s, %s, %s, 0, 0, %s) ON CONFLICT (sku, location) DO UPDATE "
                "SET on_hand = EXCLUDED.on_hand, version = EXCLUDED.version",
                final,
            )
    return int(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--locations", type=int, default=2)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--truncate", action="store_true")
    a = p.parse_args(argv)
    sc = generate(skus=a.skus, locations=a.locations, days=a.days, seed=a.seed)
    rows = write_ledger(a.database_url, sc, truncate=a.truncate)
    out = {"series": len(sc.keys), "days": a.days, "movements": rows, "start": sc.start.isoformat()}
    print(out, file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
