"""Webhooks: signed, retried with backoff on failure, never sent off the allowlist."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from inventory_cache.errors import ValidationError
from inventory_cache.webhooks import WebhookSender, check_url, verify
from tests.support.doubles import Receiver

SECRET = "s3cret"


def sender(allow: str = "", **kw: Any) -> tuple[WebhookSender, list[float]]:
    """A sender whose allowlist holds `allow` (a receiver's `http://host:port`)."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    kw.setdefault("allowed_hosts", [allow] if allow else [])
    kw.setdefault("secret", SECRET)
    return WebhookSender(sleep=record, backoff_s=0.5, **kw), waits


async def test_a_delivery_is_signed_so_the_receiver_can_verify_it(receiver: Receiver) -> None:
    s, _ = sender(receiver.url)

    ok = await s.send(f"{receiver.url}/hook", "alert.raised", {"sku": "A"}, "d-1")

    assert ok is True
    (call,) = receiver.calls
    assert call["path"] == "/hook"
    assert call["headers"]["X-Inventory-Delivery"] == "d-1"
    assert call["headers"]["X-Inventory-Event"] == "alert.raised"
    assert verify(SECRET, call["headers"]["X-Inventory-Signature"], call["body"])
    assert not verify("other", call["headers"]["X-Inventory-Signature"], call["body"])
    assert not verify(SECRET, call["headers"]["X-Inventory-Signature"], call["body"] + b" ")
    assert orjson.loads(call["body"]) == {"event": "alert.raised", "delivery_id": "d-1", "sku": "A"}


async def test_failures_are_retried_with_doubling_waits_until_accepted(receiver: Receiver) -> None:
    receiver.statuses = [503, 500, 429]
    s, waits = sender(receiver.url, attempts=4)

    assert await s.send(receiver.url, "e", {}, "d-2") is True

    assert len(receiver.calls) == 4
    assert waits == [0.5, 1.0, 2.0]
    assert {c["headers"]["X-Inventory-Delivery"] for c in receiver.calls} == {"d-2"}


async def test_delivery_gives_up_after_its_attempts_and_on_a_refusal(receiver: Receiver) -> None:
    receiver.statuses = [503, 503, 503, 400]
    s, waits = sender(receiver.url, attempts=3)

    assert await s.send(receiver.url, "e", {}, "d-3") is False
    assert await s.send(receiver.url, "e", {}, "d-4") is False  # 400: not retried

    assert len(receiver.calls) == 4
    assert waits == [0.5, 1.0]


async def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    s, waits = sender("http://127.0.0.1:9", attempts=2, timeout_s=1)

    assert await s.send("http://127.0.0.1:9/hook", "e", {}, "d-5") is False
    assert waits == [0.5]


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    other = Receiver()
    try:
        receiver.statuses = [302]
        receiver.redirect_to = f"{other.url}/elsewhere"
        s, _ = sender(receiver.url, attempts=1)

        assert await s.send(receiver.url, "e", {}, "d-6") is False
        assert other.calls == []
    finally:
        other.close()


async def test_a_host_off_the_allowlist_is_never_called(receiver: Receiver) -> None:
    s, _ = sender(allowed_hosts=["hooks.example.com"])

    assert await s.send(receiver.url, "e", {}, "d-7") is False
    assert receiver.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:6379/",
        "ftp://hooks.example.com/x",
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com.evil.net/x",
        "https://example.com/x",
        "https://hooks.example.com:notaport/x",
        "not a url",
    ],
)
def test_urls_outside_the_allowlist_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        check_url(url, ["hooks.example.com", ".shop.example.org"])


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "https://a.shop.example.org/back-in-stock"]
)
def test_urls_on_the_allowlist_are_accepted(url: str) -> None:
    assert check_url(url, ["hooks.example.com", ".shop.example.org"]) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/a", "http://127.0.0.1:5432/a", "http://127.0.0.1/a"]
)
def test_the_allowlist_matches_the_port_too(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_url(url, ["127.0.0.1", "http://127.0.0.1:9000"])
    assert refused.value.extra["field"] == "webhook_url"


def test_an_allowed_port_of_an_allowed_host_passes() -> None:
    allowed = ["http://127.0.0.1:9000", "hooks.example.com:8443"]

    assert check_url("http://127.0.0.1:9000/a", allowed) == "http://127.0.0.1:9000/a"
    assert check_url("https://hooks.example.com:8443/a", allowed)


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "http://a.shop.example.org/x", "http://hooks.example.com:443/x"],
)
def test_plain_http_needs_a_host_allowed_for_http(url: str) -> None:
    with pytest.raises(ValidationError, match="https"):
        check_url(url, ["hooks.example.com", ".shop.example.org"])


@pytest.mark.parametrize("bad", ["\t", "\r", "\n", "\x00", "\x7f", " ", "\x85"])
def test_a_url_with_a_control_character_or_space_is_refused(bad: str) -> None:
    for url in (f"https://hooks.example.com/a{bad}b", f"https://hooks.{bad}example.com/a"):
        with pytest.raises(ValidationError, match="webhook_url"):
            check_url(url, ["hooks.example.com"])


def test_a_bad_allowlist_entry_is_refused_at_startup() -> None:
    from inventory_cache.settings import Settings

    with pytest.raises(ValueError, match="allowed"):
        Settings(webhook_allowed_hosts="ftp://x.example.com")
    assert Settings(
        webhook_allowed_hosts="a.example.com, http://10.0.0.5:8080"
    ).webhook_allowed_hosts == [
        "a.example.com",
        "http://10.0.0.5:8080",
    ]


async def test_an_unsendable_url_is_a_failed_delivery_not_an_exception() -> None:
    s, _ = sender(allowed_hosts=["hooks.example.com"])

    assert await s.send("https://hooks.example.com/a\tb", "e", {}, "d-9") is False
