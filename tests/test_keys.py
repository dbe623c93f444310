"""Key names come from `Keys` alone, and never change: Redis holds them across releases."""

from __future__ import annotations

from inventory_cache.keys import Keys

KEYS = Keys("inv", 256)


def test_the_keys_built_for_workers_leases_and_alerts() -> None:
    assert KEYS.worker_health("host-1") == "inv:worker:host-1"
    assert KEYS.lease("scheduler") == "inv:{lease}:scheduler"
    assert KEYS.lease_fence("scheduler") == "inv:{lease}:scheduler:fence"
    assert KEYS.lease_run("scheduler", "r1") == "inv:{lease}:scheduler:run:r1"
    assert KEYS.alerts_cursor(12) == "inv:{12}:cur:alerts"
    assert KEYS.stock("SKU-1") == f"inv:{{{KEYS.group_of('SKU-1')}}}:s:SKU-1"
    assert KEYS.tagged_prefix() == "inv:{"


def test_a_written_key_reads_back_as_a_stock_change_only_for_stock_and_readiness() -> None:
    """The near-cache reads the name of every key written under the prefix."""
    assert KEYS.stock_change(KEYS.stock("a:s:b").encode()) == ("a:s:b", False)
    assert KEYS.stock_change(KEYS.ready(12).encode()) == (None, True)
    assert KEYS.stock_change(KEYS.ready(12).encode() + b"\n") == (None, False)
    assert KEYS.stock_change(KEYS.part(9, "order-1").encode()) == (None, False)
    assert KEYS.stock_change(KEYS.events(3).encode()) == (None, False)
    assert KEYS.stock_change(KEYS.lease("ready").encode()) == (None, False)
    assert Keys("inv2", 256).stock_change(KEYS.stock("a").encode()) == (None, False)


def test_scan_patterns_and_the_keys_they_find_read_back() -> None:
    assert KEYS.scan_pattern("s") == "inv:{*}:s:*"
    assert KEYS.scan_pattern() == "inv:{*}:*"
    assert KEYS.stock_sku(KEYS.stock("a:s:b").encode()) == "a:s:b"
    assert KEYS.stock_sku(KEYS.ready(3)) is None
    assert KEYS.stock_sku(KEYS.op("inbound", "a", "r:s:x")) is None
    assert KEYS.customer_count_of(KEYS.customer_count("a:b", "c:d")) == ("a:b", "c:d")
    assert KEYS.customer_count_of(KEYS.stock("a")) is None
    m = KEYS.key_pattern("r", "t").match(KEYS.part(9, "order-1"))
    assert m is not None and (m[1], m[2], m[3]) == ("9", "r", "order-1")
