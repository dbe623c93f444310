"""One exception per error code; scripts' `err` replies map onto them in one place."""

from __future__ import annotations

from typing import Any, ClassVar


class InventoryError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ValidationError(InventoryError):
    code, status, title = "validation_error", 422, "Invalid request"


class NotFound(InventoryError):
    code, status, title = "not_found", 404, "Not found"


class InsufficientStock(InventoryError):
    code, status, title = "insufficient_stock", 409, "Insufficient stock"

    def __init__(self, lines: list[dict[str, Any]], detail: str = "") -> None:
        super().__init__(
            detail
            or "not enough stock for: "
            + ", ".join(
                f"{ln['sku']} (requested {ln['requested']}, available {ln['available']})"
                for ln in lines
            ),
            lines=lines,
        )
        self.lines = lines


class LimitExceeded(InventoryError):
    """A per-customer limit refused the order; `allowed` is what the customer may still take."""

    code, status, title = "limit_exceeded", 409, "Per-customer limit exceeded"

    def __init__(self, lines: list[dict[str, Any]], detail: str = "") -> None:
        super().__init__(
            detail
            or "over the per-customer limit for: "
            + ", ".join(
                f"{ln['sku']} (requested {ln['requested']}, allowed {ln['allowed']})"
                for ln in lines
            ),
            lines=lines,
        )
        self.lines = lines


class InvalidState(InventoryError):
    code, status, title = "invalid_state", 409, "Invalid state"


class IdempotencyMismatch(InventoryError):
    code, status, title = "idempotency_mismatch", 409, "Idempotency key reused with another body"


class NotReady(InventoryError):
    code, status, title = "not_ready", 503, "Stock cache not ready"


class RedisFull(NotReady):
    """Redis refused a write because its memory is over `maxmemory` (noeviction).

    Scripts declare their flags (`#!lua`), so Redis refuses a writing script before it
    runs: nothing was applied, and a retry once memory is freed or raised is safe.
    """

    title = "Redis memory full"

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            detail
            or "Redis memory is full (used memory over maxmemory): writes are refused until "
            "memory is freed or maxmemory is raised; reads still work"
        )


class ScriptKeysError(InventoryError):
    """A script was called without the key of a SKU it had to touch: a bug, never input."""

    code, status, title = "internal_error", 500, "Script called with missing keys"


ERRORS: dict[str, type[InventoryError]] = {
    cls.code: cls
    for cls in (ValidationError, NotFound, InvalidState, IdempotencyMismatch, NotReady)
}


def raise_for_reply(reply: dict[str, Any]) -> None:
    """Raise the typed error a script's `err` reply stands for; return if there is none."""
    code = reply.get("err")
    if code is None:
        return
    extra = {k: v for k, v in reply.items() if k not in ("err", "detail")}
    detail = str(reply.get("detail", ""))
    if code == "insufficient_stock":
        lines = reply.get("lines") or []
        raise InsufficientStock(list(lines) if isinstance(lines, list) else [])
    if code == "limit_exceeded":
        lines = reply.get("lines") or []
        raise LimitExceeded(list(lines) if isinstance(lines, list) else [])
    if code == "keys":
        raise ScriptKeysError(f"missing stock key for {reply.get('sku')}")
    raise ERRORS.get(code, InventoryError)(detail, **extra)
