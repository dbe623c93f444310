"""One handle per Lua script: a keyword-only function whose parameters follow the script's
header (`lua/<name>-<keys>.lua`), returning the `Call` to run.

Keys come first, in KEYS order, annotated `KeyName` (`Sequence[KeyName]` for a script's
`KEYS[n+1..]`); the script's arguments follow in ARGV order. So a wrong or missing name,
a key given as an argument's value, a transition or kind the script does not know are
type errors (mypy), and `tests/test_script_calls.py` checks every handle against its
file's header (key count, variadic keys, argument count), so a handle cannot drift from
its script. A handle does nothing but build the two lists: the hot reserve path pays for
no more than that.

Values are sent as redis-py sends them: `str`, `bytes` (JSON from orjson), `int`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, TypeAlias

KeyName: TypeAlias = str
Json: TypeAlias = bytes | str
Ms: TypeAlias = int
# What `settle-4.lua` moves a part by, `movement-4.lua`'s kinds, `transfer_step-4.lua`'s steps.
Transition: TypeAlias = Literal["cancel", "expire", "ship", "release"]
MovementKind: TypeAlias = Literal[
    "inbound", "adjust", "return", "pos_sale", "pos_return", "pos_count"
]
TransferStep: TypeAlias = Literal["ship", "receive", "cancel"]
Decision: TypeAlias = Literal["cancel", "ship", "expire"]


class Call(NamedTuple):
    """One script call: the script's operation name (its file's), KEYS, ARGV."""

    script: str
    keys: list[str]
    args: list[Any]


# ---------------------------------------------------------------- readiness, rate limit
def check_ready(*, ready: KeyName) -> Call:
    return Call("check_ready", [ready], [])


def mark_ready(*, ready: KeyName, at: Ms) -> Call:
    return Call("mark_ready", [ready], [at])


def rate_limit(*, limiter: KeyName, now: Ms, interval_ms: str, tolerance_ms: str) -> Call:
    """`interval_ms`, `tolerance_ms`: fractional milliseconds as `repr(float)`."""
    return Call("rate_limit", [limiter], [now, interval_ms, tolerance_ms])


# ---------------------------------------------------------------- movements and policies
def movement(
    *,
    ready: KeyName,
    stock: KeyName,
    op: KeyName,
    events: KeyName,
    op_id: str,
    ref: str,
    reason: str,
    sku: str,
    location: str,
    delta: int,
    set_on_hand: int | Literal[""],
    expected_on_hand: int | Literal[""],
    fingerprint: str,
    now: Ms,
    retention_ms: Ms,
    op_suffix: str,
    kind: MovementKind,
) -> Call:
    return Call(
        "movement",
        [ready, stock, op, events],
        [
            op_id,
            ref,
            reason,
            sku,
            location,
            delta,
            set_on_hand,
            expected_on_hand,
            fingerprint,
            now,
            retention_ms,
            op_suffix,
            kind,
        ],
    )


def set_safety_stock(
    *,
    ready: KeyName,
    stock: KeyName,
    events: KeyName,
    sku: str,
    location: str,
    safety_stock: int,
    now: Ms,
) -> Call:
    return Call("set_safety_stock", [ready, stock, events], [sku, location, safety_stock, now])


def set_preorder_limit(
    *,
    ready: KeyName,
    stock: KeyName,
    events: KeyName,
    sku: str,
    location: str,
    limit: int,
    now: Ms,
) -> Call:
    return Call("set_preorder_limit", [ready, stock, events], [sku, location, limit, now])


def set_limit(
    *,
    ready: KeyName,
    limit: KeyName,
    events: KeyName,
    sku: str,
    per_customer: int,
    window_seconds: int,
    now: Ms,
) -> Call:
    return Call("set_limit", [ready, limit, events], [sku, per_customer, window_seconds, now])


def bundle_set(
    *,
    ready: KeyName,
    bundle: KeyName,
    events: KeyName,
    stock: KeyName,
    sku: str,
    components: Json,
    now: Ms,
) -> Call:
    """`components`: canonical JSON `[[sku, qty], ...]` sorted by SKU, `""` to delete."""
    return Call("bundle_set", [ready, bundle, events, stock], [sku, components, now])


# ---------------------------------------------------------------- incoming stock
def incoming_set(
    *,
    ready: KeyName,
    stock: KeyName,
    closed: KeyName,
    book: KeyName,
    events: KeyName,
    ref: str,
    sku: str,
    location: str,
    qty: int,
    expected_at: Ms,
    now: Ms,
) -> Call:
    return Call(
        "incoming_set",
        [ready, stock, closed, book, events],
        [ref, sku, location, qty, expected_at, now],
    )


def incoming_close(
    *,
    ready: KeyName,
    stock: KeyName,
    closed: KeyName,
    book: KeyName,
    events: KeyName,
    ref: str,
    sku: str,
    action: Literal["receive", "cancel"],
    received: int | Literal[""],
    now: Ms,
) -> Call:
    return Call(
        "incoming_close",
        [ready, stock, closed, book, events],
        [ref, sku, action, received, now],
    )


# ---------------------------------------------------------------- order and transfer indexes
def index_open(
    *,
    ready: KeyName,
    index: KeyName,
    fingerprint: str,
    token: str,
    now: Ms,
    expires_at: Ms | Literal[""],
    body: Json,
    retention_ms: Ms,
    stale_token: str,
) -> Call:
    return Call(
        "index_open",
        [ready, index],
        [fingerprint, token, now, expires_at, body, retention_ms, stale_token],
    )


def index_commit(*, ready: KeyName, index: KeyName, token: str, preorders: bool) -> Call:
    return Call("index_commit", [ready, index], [token, "1" if preorders else ""])


def index_drop(*, ready: KeyName, index: KeyName, token: str) -> Call:
    return Call("index_drop", [ready, index], [token])


def index_close(*, ready: KeyName, index: KeyName, expires_at: Ms) -> Call:
    return Call("index_close", [ready, index], [expires_at])


def order_decide(
    *,
    ready: KeyName,
    index: KeyName,
    action: Decision,
    now: Ms,
    vouch: str,
    preorders_seen: bool,
) -> Call:
    return Call("order_decide", [ready, index], [action, now, vouch, "1" if preorders_seen else ""])


# ---------------------------------------------------------------- reservations
def reserve(
    *,
    ready: KeyName,
    part: KeyName,
    expiry: KeyName,
    events: KeyName,
    line_keys: Sequence[KeyName],
    order_id: str,
    token: str,
    part_fingerprint: str,
    now: Ms,
    expires_at: Ms,
    priority: str,
    lines: Json,
    order_fingerprint: str,
    bundle_lines: Json,
    customer_id: str,
) -> Call:
    """`line_keys`: each line's stock, limit, pre-order book, then (with a customer) the
    customer's count, as `StockEngine._reserve_line_keys` lists them."""
    return Call(
        "reserve",
        [ready, part, expiry, events, *line_keys],
        [
            order_id,
            token,
            part_fingerprint,
            now,
            expires_at,
            priority,
            lines,
            order_fingerprint,
            bundle_lines,
            customer_id,
        ],
    )


def reserve_order(
    *,
    ready: KeyName,
    index: KeyName,
    part_keys: Sequence[KeyName],
    order_id: str,
    token: str,
    now: Ms,
    expires_at: Ms,
    order_fingerprint: str,
    body: Json,
    retention_ms: Ms,
    customer_id: str,
    find_bundles: bool,
    parts: Sequence[Any],
    priority: str,
) -> Call:
    """`part_keys`: each group's four keys and line keys; `parts`: each group's four
    values (part fingerprint, number of lines, lines JSON, bundle lines JSON), flat."""
    return Call(
        "reserve_order",
        [ready, index, *part_keys],
        [
            order_id,
            token,
            now,
            expires_at,
            order_fingerprint,
            body,
            retention_ms,
            customer_id,
            "1" if find_bundles else "",
            *parts,
            priority,
        ],
    )


def settle(
    *,
    ready: KeyName,
    part: KeyName,
    expiry: KeyName,
    events: KeyName,
    sku_keys: Sequence[KeyName],
    order_id: str,
    now: Ms,
    retention_ms: Ms,
    skus: Json,
    token: str,
    transition: Transition,
) -> Call:
    """`sku_keys`: the stock of each SKU `skus` names, then its pre-order book, then (with
    a customer) the customer's count of it."""
    return Call(
        "settle",
        [ready, part, expiry, events, *sku_keys],
        [order_id, now, retention_ms, skus, token, transition],
    )


def expire_parts(
    *,
    ready: KeyName,
    expiry: KeyName,
    events: KeyName,
    part_keys: Sequence[KeyName],
    now: Ms,
    retention_ms: Ms,
    parts: Json,
) -> Call:
    return Call("expire_parts", [ready, expiry, events, *part_keys], [now, retention_ms, parts])


# ---------------------------------------------------------------- transfers
def transfer_request(
    *,
    ready: KeyName,
    transfer: KeyName,
    stock: KeyName,
    events: KeyName,
    transfer_id: str,
    fingerprint: str,
    sku: str,
    from_location: str,
    to_location: str,
    qty: int,
    now: Ms,
) -> Call:
    return Call(
        "transfer_request",
        [ready, transfer, stock, events],
        [transfer_id, fingerprint, sku, from_location, to_location, qty, now],
    )


def transfer_step(
    *,
    ready: KeyName,
    transfer: KeyName,
    stock: KeyName,
    events: KeyName,
    transfer_id: str,
    now: Ms,
    retention_ms: Ms,
    step: TransferStep,
) -> Call:
    return Call(
        "transfer_step", [ready, transfer, stock, events], [transfer_id, now, retention_ms, step]
    )


# ---------------------------------------------------------------- reconciliation
def reconcile_read(*, ready: KeyName, events: KeyName, stocks: Sequence[KeyName]) -> Call:
    return Call("reconcile_read", [ready, events, *stocks], [])


# ---------------------------------------------------------------- the scheduler's lease
def lease_acquire(*, lease: KeyName, fence: KeyName, owner: str, ttl_ms: Ms) -> Call:
    return Call("lease_acquire", [lease, fence], [owner, ttl_ms])


def lease_renew(*, lease: KeyName, owner: str, token: int, ttl_ms: Ms) -> Call:
    return Call("lease_renew", [lease], [owner, token, ttl_ms])


def lease_release(*, lease: KeyName, owner: str, token: int) -> Call:
    return Call("lease_release", [lease], [owner, token])


def lease_claim(
    *, lease: KeyName, claim: KeyName, owner: str, token: int, retention_ms: Ms
) -> Call:
    return Call("lease_claim", [lease, claim], [owner, token, retention_ms])


# ---------------------------------------------------------------- warmup
def restore_stock(*, stock: KeyName, version: int, levels: Json) -> Call:
    return Call("restore_stock", [stock], [version, levels])


def restore_bundle(*, bundle: KeyName, stock: KeyName, version: int, components: Json) -> Call:
    return Call("restore_bundle", [bundle, stock], [version, components])


def restore_part(
    *,
    part: KeyName,
    expiry: KeyName,
    order_id: str,
    status: str,
    part_fingerprint: str,
    token: str,
    reserved_at: Ms,
    expires_at: Ms,
    lines: Json,
    order_fingerprint: str,
    settled_at: Ms | Literal[""],
    settled_until: Ms | Literal[""],
    bundle_lines: Json,
    customer_id: str,
    counted: Json,
) -> Call:
    return Call(
        "restore_part",
        [part, expiry],
        [
            order_id,
            status,
            part_fingerprint,
            token,
            reserved_at,
            expires_at,
            lines,
            order_fingerprint,
            settled_at,
            settled_until,
            bundle_lines,
            customer_id,
            counted,
        ],
    )


def restore_book(
    *,
    stock: KeyName,
    book: KeyName,
    parts: Sequence[KeyName],
    version: int,
    stock_fields: Json,
    book_fields: Json,
    part_lines: Json,
) -> Call:
    return Call(
        "restore_book", [stock, book, *parts], [version, stock_fields, book_fields, part_lines]
    )


def restore_record(*, record: KeyName, fields: Json, expires_at: Ms | Literal[""]) -> Call:
    return Call("restore_record", [record], [fields, expires_at])


def restore_op(*, op: KeyName, value: Json, expires_at: Ms) -> Call:
    return Call("restore_op", [op], [value, expires_at])


def restore_count(
    *, count: KeyName, generation: int, entries: Json, expires_at: Ms | Literal[""]
) -> Call:
    return Call("restore_count", [count], [generation, entries, expires_at])
