"""Stream entries of incoming stock and pre-orders as the Lua scripts write them
(ARCHITECTURE.md, "Events"), built by hand so that the persistence side is tested on its
own: each helper returns an entry's fields."""

from __future__ import annotations

from typing import Any

import orjson

Fields = dict[str, str]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def row(sku: str, loc: str, doh: int, dl: int, oh: int, lk: int, v: int, ss: int = 0) -> list[Any]:
    return [sku, loc, doh, dl, oh, lk, ss, v]


def inbound(sku: str, loc: str, qty: int, after: int, v: int, ts: int) -> Fields:
    return {
        "t": "inbound",
        "op": f"inbound:{sku}:{v}",
        "ts": str(ts),
        "ref": f"in-{sku}-{v}",
        "reason": "inbound",
        "rows": _json([row(sku, loc, qty, 0, after, 0, v)]),
    }


def incoming(
    ref: str,
    reason: str,
    record: list[Any],
    level: list[Any],
    ts: int,
    pre: list[list[Any]] | None = None,
) -> Fields:
    """`record` = [sku, loc, qty, expected_at, status, received_qty]; `level` its row."""
    fields = {
        "t": "incoming",
        "op": f"incoming:{ref}:{level[7]}",
        "ts": str(ts),
        "ref": ref,
        "reason": reason,
        "rows": _json([level]),
        "in": _json(record),
    }
    if pre:
        fields["pre"] = _json(pre)
    return fields


def preorder_limit(sku: str, loc: str, limit: int, level: list[Any], ts: int) -> Fields:
    return {
        "t": "policy",
        "op": f"policy:{sku}:{loc}:{level[7]}",
        "ts": str(ts),
        "ref": sku,
        "reason": "preorder_limit",
        "rows": _json([level]),
        "pl": _json([sku, loc, limit]),
    }


ACTION_STATUS = {
    "reserve": "active",
    "cancel": "cancelled",
    "expire": "expired",
    "ship": "shipped",
    "release": "released",
}


def part(
    action: str,
    order: str,
    tok: str,
    lines: list[list[Any]],
    rows: list[list[Any]],
    ts: int,
    exp: int,
    pre: list[list[Any]] | None = None,
    fp: str | None = None,
) -> Fields:
    """A part event; `pre` = [[sku, loc, qty, seq, expected_at], ...]."""
    fields = {
        "t": action,
        "op": f"{action}:{order}:{tok}",
        "ts": str(ts),
        "ref": order,
        "reason": action,
        "rows": _json(rows),
        "order": order,
        "exp": str(exp),
        "lines": _json(lines),  # '[]' for a part of pre-order lines only
        "st": ACTION_STATUS[action],
        "fp": fp or f"pfp-{order}",
        "tok": tok,
        "bdl": "",
    }
    if action == "reserve":
        fields["ofp"] = f"ofp-{order}"
    if pre:
        fields["pre"] = _json(pre)
    return fields
