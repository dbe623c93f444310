"""Outgoing webhooks: signed, retried with backoff, and only to allowlisted hosts.

Why an allowlist: a subscription's `webhook_url` comes from a client. Without it a client
could make this service call `http://169.254.169.254/` or an internal admin port (SSRF).
A URL is accepted only if its host is on `INVENTORY_WEBHOOK_ALLOWED_HOSTS` (exact name,
or `.example.com` for any subdomain of example.com), is http(s), and carries no
credentials; redirects are never followed, since they could lead anywhere.

Why a signature: the receiver must know the call is ours and recent. The body is signed
with HMAC-SHA256 under `INVENTORY_WEBHOOK_SECRET`, as in Stripe's scheme:
`X-Inventory-Signature: t=<unix seconds>,v1=<hex of HMAC(secret, "<t>.<body>")>`.
`X-Inventory-Delivery` is stable across retries, so a receiver can drop duplicates
(delivery is at least once: a timeout after the receiver acted leads to a retry).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from inventory_cache.errors import ValidationError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith(".") and host.endswith(entry) and host != entry[1:]:
            return True
        if host == entry:
            return True
    return False


def check_url(url: str, allowed: Sequence[str]) -> str:
    """The URL if we may call it; else `ValidationError` (422 for a subscription)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise ValidationError("webhook_url is not a URL", field="webhook_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError("webhook_url must be an http(s) URL", field="webhook_url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("webhook_url must not carry credentials", field="webhook_url")
    if len(url) > 2000:
        raise ValidationError("webhook_url is longer than 2000 characters", field="webhook_url")
    if not host_allowed(host, allowed):
        raise ValidationError(
            f"webhook host {host!r} is not on the allowlist", field="webhook_url", host=host
        )
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale calls."""
    try:
        fields = dict(p.split("=", 1) for p in header.split(","))
        ts = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), f"t={ts},v1={fields.get('v1', '')}")


class WebhookSender:
    """Posts JSON events; `send` returns whether the receiver accepted (2xx) in time."""

    def __init__(
        self,
        *,
        allowed_hosts: Sequence[str],
        secret: str | None,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.allowed_hosts = list(allowed_hosts)
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._client = client
        self._sleep = sleep

    async def send(self, url: str, event: str, payload: dict[str, Any], delivery_id: str) -> bool:
        """One delivery: up to `attempts` tries, waiting backoff, 2x backoff, 4x... between.

        A 4xx other than 408/429 is the receiver refusing this body: not retried.
        """
        try:
            check_url(url, self.allowed_hosts)
        except ValidationError as exc:
            log.warning("webhook %s not sent: %s", delivery_id, exc.detail)
            return False
        body = orjson.dumps({"event": event, "delivery_id": delivery_id, **payload})
        for attempt in range(self.attempts):
            if attempt:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "inventory-cache-webhooks",
                "X-Inventory-Event": event,
                "X-Inventory-Delivery": delivery_id,
            }
            if self.secret:
                headers["X-Inventory-Signature"] = sign(self.secret, int(time.time()), body)
            try:
                status = await self._post(url, body, headers)
            except httpx.HTTPError as exc:
                log.info("webhook %s try %d failed: %s", delivery_id, attempt + 1, exc)
                continue
            if 200 <= status < 300:
                return True
            if 400 <= status < 500 and status not in (408, 429):
                log.warning("webhook %s refused with %d", delivery_id, status)
                return False
        log.warning("webhook %s given up after %d tries", delivery_id, self.attempts)
        return False

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        if self._client is not None:
            resp = await self._client.post(url, content=body, headers=headers)
            return resp.status_code
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            resp = await client.post(url, content=body, headers=headers)
            return resp.status_code
