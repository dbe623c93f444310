"""The PostgreSQL-only baseline: what a shop would write without Redis, for the benchmarks.

The same reserve / cancel / ship / availability semantics as `StockEngine`, done with a
conditional `UPDATE ... WHERE on_hand - locked - safety_stock >= qty` and a ledger row in
one transaction per operation, behind the same HTTP routes. It exists so that
`scripts/bench_engine_vs_pg.py` and `scripts/bench_all.py` can answer "why not just
PostgreSQL?" with figures measured side by side; it is not part of the service.
"""

from baseline.engine import PgStockEngine
from baseline.schema import create_schema, drop_schema

__all__ = ["PgStockEngine", "create_schema", "drop_schema"]
