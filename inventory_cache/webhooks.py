"""Outgoing webhooks: signed, retried with backoff, and only to allowlisted hosts.

Why an allowlist: a subscription's `webhook_url` comes from a client. Without it a client
could make this service call `http://169.254.169.254/` or an internal admin port (SSRF).
A URL is accepted only if its host and port are on `INVENTORY_WEBHOOK_ALLOWED_HOSTS`
(`host`, `host:port`, `.example.com` for any subdomain; the port defaults to 443), it
is https (plain http only to an entry written `http://host[:port]`), and it carries no
credentials, spaces or control characters; redirects are never followed, since they
could lead anywhere.

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
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from inventory_cache.errors import ValidationError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AllowedOrigin:
    """One allowlist entry: `host`, `host:port`, `.example.com` (any subdomain), each
    for https; `http://host[:port]` also lets plain http reach that port."""

    host: str
    port: int
    http: bool

    @classmethod
    def parse(cls, entry: str) -> AllowedOrigin:
        text = entry.strip().lower()
        scheme = "https"
        if "://" in text:
            scheme, _, text = text.partition("://")
        try:
            parts = urlsplit(f"{scheme}://{text.rstrip('/')}")
            port = parts.port
        except ValueError:
            raise ValueError(f"webhook allowed host {entry!r} is not host[:port]") from None
        host = (parts.hostname or "").rstrip(".")
        if scheme not in ("http", "https") or not host or parts.path or "@" in text:
            raise ValueError(
                f"webhook allowed host {entry!r} must be host[:port], .domain[:port] "
                "or http://host[:port]"
            )
        return cls(host, port or DEFAULT_PORT[scheme], scheme == "http")

    def admits(self, scheme: str, host: str, port: int) -> bool:
        if port != self.port or (scheme == "http" and not self.http):
            return False
        if self.host.startswith("."):
            return host.endswith(self.host) and host != self.host[1:]
        return host == self.host


DEFAULT_PORT = {"http": 80, "https": 443}
# C0 and C1 controls, DEL and whitespace: urlsplit silently drops some of them (tab, CR,
# LF) while the HTTP client refuses them at delivery.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def check_url(url: str, allowed: Sequence[str]) -> str:
    """The URL if we may call it; else `ValidationError` (422 for a subscription).

    Its scheme, host and port must match an allowlist entry (`AllowedOrigin`): an allowed
    host is not an allowed machine, or `http://127.0.0.1:6379` would reach Redis.
    """
    if len(url) > 2000:
        raise ValidationError("webhook_url is longer than 2000 characters", field="webhook_url")
    if _UNSAFE.search(url):
        raise ValidationError(
            "webhook_url must not contain spaces or control characters", field="webhook_url"
        )
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port  # a malformed port raises here
    except ValueError:
        raise ValidationError("webhook_url is not a URL", field="webhook_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationError("webhook_url must be an https URL", field="webhook_url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("webhook_url must not carry credentials", field="webhook_url")
    port = port or DEFAULT_PORT[parts.scheme]
    origins = [AllowedOrigin.parse(a) for a in allowed]
    if any(o.admits(parts.scheme, host, port) for o in origins):
        return url
    if parts.scheme == "http" and any(
        not o.http and o.admits("https", host, o.port) for o in origins
    ):
        raise ValidationError(
            f"webhook host {host!r} is allowed for https only: use an https URL",
            field="webhook_url",
            host=host,
        )
    raise ValidationError(
        f"webhook host {host!r} port {port} is not on the allowlist",
        field="webhook_url",
        host=host,
    )


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
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
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
