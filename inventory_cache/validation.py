"""The API's input rules (docs/contract.md), checked before anything reaches Redis (invariant 6)."""

from __future__ import annotations

import re
from typing import Any

from inventory_cache.errors import ValidationError

# Matched whole: `$` would also match before a trailing newline ("phone-a\n").
IDENT = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
MAX_QTY = 1_000_000
MAX_ON_HAND = 1_000_000_000
MAX_LINES = 100
MAX_BATCH_SKUS = 200
MAX_COMPONENTS = 20
MAX_LIMIT_WINDOW_SECONDS = 366 * 86400  # a per-customer limit's rolling window: up to a year
ADJUST_REASONS = frozenset({"damage", "loss", "found", "count", "correction", "reconcile"})


def ident(value: Any, field: str) -> str:
    if not isinstance(value, str) or not IDENT.match(value):
        raise ValidationError(f"{field} must be 1-64 characters of [A-Za-z0-9._:-]", field=field)
    return value


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(f"{field} must be an integer from {lo} to {hi}", field=field)
    return value


def qty(value: Any, field: str = "qty") -> int:
    return _int(value, field, 1, MAX_QTY)


def on_hand(value: Any, field: str = "set_on_hand") -> int:
    return _int(value, field, 0, MAX_ON_HAND)


def delta(value: Any, field: str = "delta") -> int:
    d = _int(value, field, -MAX_QTY, MAX_QTY)
    if d == 0:
        raise ValidationError(f"{field} must not be 0", field=field)
    return d


def ttl(value: Any, maximum: int) -> int:
    return _int(value, "ttl_seconds", 1, maximum)


def window(value: Any) -> int:
    return _int(value, "window_seconds", 1, MAX_LIMIT_WINDOW_SECONDS)


def reason(value: Any) -> str:
    if value not in ADJUST_REASONS:
        raise ValidationError(
            "reason must be one of " + ", ".join(sorted(ADJUST_REASONS)), field="reason"
        )
    return str(value)
