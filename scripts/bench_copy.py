#!/usr/bin/env python
"""COPY against the sink's `unnest` arrays, on the ledger's largest table (`movements`).

    .venv/bin/python scripts/bench_copy.py [--rows 1000] [--rounds 5]

Why the write-behind sink does not use COPY: COPY cannot carry `ON CONFLICT`, so a sink
that keeps the ledger's merge rules must COPY each table's rows into a temporary stage
and merge them with one `INSERT ... SELECT` per table. Three ways of writing the same
batch of `--rows` movements, one transaction each, in alternating rounds:

- `unnest`: the sink's own statement (`persistence.sink`), one array per column;
- `copy, 1 stage`: binary COPY into a temporary stage, then the merge;
- `copy, 12 stages`: the same with the other eleven stages such a sink needs present.
  A stage must be emptied at each commit (`ON COMMIT DELETE ROWS`: PostgreSQL truncates
  every such table of the session at each commit that touched a temporary table),
  which is the cost this row shows. COPY also cannot run in pipeline mode, so a staged
  sink sends each statement and waits; the `unnest` sink pipelines the whole batch.

Prints rows/s per way (median of the rounds, with the spread) and the load average
before and after. Loopback only; uses a scratch database beside `--database-url`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from benchlib import drop_database, markdown_table, recreate_database, require_loopback

from persistence.db import migrate
from persistence.sink import _PG_MOVEMENTS, _columns, _ts

STAGE = (
    "op text, sku text, loc text, ty text, re text, ref text, doh int8, dl int8, oh int8,"
    " lk int8, ss int8, v int8, t int8, sid text, b text"
)
MERGE = f"""
INSERT INTO movements (op_id, sku, location, type, reason, ref, delta_on_hand, delta_locked,
                       on_hand_after, locked_after, safety_stock_after, version, created_at,
                       stream_id, recorded_at, bundle)
SELECT op, sku, loc, ty, re, ref, doh, dl, oh, lk, ss, v, {_ts("t")}, sid,
       statement_timestamp(), b
FROM stage_movements
ON CONFLICT (op_id, sku, location) DO NOTHING
"""
Row = tuple[Any, ...]


def batch(k: int, n: int) -> list[Row]:
    """`n` new movements (unique op ids and versions per batch `k`), as the sink's rows."""
    return [
        (
            f"op{k}-{i}",
            f"B{i % 2000}",
            "north",
            "inbound",
            "",
            f"in{k}-{i}",
            5,
            0,
            100,
            0,
            0,
            k * n + i,
            1_700_000_000_000,
            f"{k}-{i}",
            None,
        )
        for i in range(n)
    ]


def write_unnest(conn: psycopg.Connection[Any], rows: list[Row]) -> None:
    with conn.pipeline(), conn.transaction():
        conn.execute(_PG_MOVEMENTS, _columns(rows, "ttttttiiiiiiitt"))


def write_copy(conn: psycopg.Connection[Any], rows: list[Row]) -> None:
    with conn.transaction():
        with conn.cursor().copy("COPY stage_movements FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([c.split()[1] for c in STAGE.split(", ")])
            for row in rows:
                copy.write_row(row)
        conn.execute(MERGE)


def connect(dsn: str, stages: int) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn)
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE stage_movements ({STAGE}) ON COMMIT DELETE ROWS")
        for i in range(stages - 1):
            conn.execute(f"CREATE TEMP TABLE stage_other{i} (a int8, b text) ON COMMIT DELETE ROWS")
    return conn


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get(
            "INVENTORY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/test"
        ),
    )
    p.add_argument("--rows", type=int, default=1000, help="movements per transaction")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median taken)")
    p.add_argument("--batches", type=int, default=5, help="transactions per way per round")
    args = p.parse_args(argv)
    require_loopback(args.database_url)
    name = "bench_copy_" + uuid.uuid4().hex[:8]
    url = recreate_database(args.database_url, name)
    load_before = os.getloadavg()[0]
    ways: list[tuple[str, int, Callable[[psycopg.Connection[Any], list[Row]], None]]] = [
        ("unnest (the sink)", 1, write_unnest),
        ("copy, 1 stage", 1, write_copy),
        ("copy, 12 stages", 12, write_copy),
    ]
    rates: dict[str, list[float]] = {w[0]: [] for w in ways}
    try:
        migrate(url.replace("postgresql://", "postgresql+psycopg://", 1))
        conns = {label: connect(url, stages) for label, stages, _ in ways}
        k = 0
        for _ in range(args.rounds):
            for label, _stages, write in ways:
                started = time.perf_counter()
                for _ in range(args.batches):
                    k += 1
                    write(conns[label], batch(k, args.rows))
                rates[label].append(args.rows * args.batches / (time.perf_counter() - started))
        for conn in conns.values():
            conn.close()
        with psycopg.connect(url) as conn:
            written = conn.execute("SELECT count(*) FROM movements").fetchone()
    finally:
        drop_database(args.database_url, name)
    expected = args.rows * args.batches * args.rounds * len(ways)
    if written is None or written[0] != expected:
        raise SystemExit(f"{written} movements in the ledger, {expected} written: a way lost rows")
    base = statistics.median(rates[ways[0][0]])
    print(
        markdown_table(
            ["way", "rows/s (median)", "spread", "÷ unnest"],
            [
                (
                    label,
                    f"{statistics.median(r):,.0f}",
                    f"{min(r):,.0f}-{max(r):,.0f}",
                    f"{statistics.median(r) / base:.2f}",
                )
                for label, r in rates.items()
            ],
        )
    )
    after = os.getloadavg()[0]
    print(f"\nload average {load_before:.2f} before, {after:.2f} after", file=sys.stderr)
    return {"rows_per_s": rates, "movements": written[0], "load_average": [load_before, after]}


if __name__ == "__main__":
    main()
