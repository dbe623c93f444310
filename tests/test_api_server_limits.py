"""Connection limits of `inventory-cache serve`: a header too large is 431, and a client
that stalls (no request, a request's headers or body never finished) is disconnected."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support.api import Database, server_env, uvicorn_server

LIMITS = {
    "INVENTORY_MAX_HEADER_BYTES": "8192",
    "INVENTORY_HEADER_TIMEOUT_SECONDS": "1",
    "INVENTORY_BODY_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def server(api_database: Database) -> Iterator[tuple[str, int]]:
    env = server_env("limits-unused", api_database.url, **LIMITS)
    with uvicorn_server(env) as url:
        host, _, port = url.removeprefix("http://").partition(":")
        yield host, int(port)


def connect(server: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(server, timeout=15)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (or the 15 s socket timeout raises)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def send_quietly(s: socket.socket, data: bytes) -> None:
    """Send what the server still takes: it may close while we write."""
    with contextlib.suppress(OSError):
        s.sendall(data)


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body) if body else {}


@pytest.mark.parametrize("size", [16_384, 20 * 1024 * 1024])
def test_a_header_over_the_limit_is_431_and_the_connection_closed(
    server: tuple[str, int], size: int
) -> None:
    with connect(server) as s:
        send_quietly(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        for _ in range(0, size, len(chunk)):
            send_quietly(s, chunk)
        send_quietly(s, b"\r\n\r\n")
        status, body = status_and_body(read_all(s))

    assert status == 431
    assert (body["code"], body["status"]) == ("header_too_large", 431)


def test_headers_within_the_limit_pass(server: tuple[str, int]) -> None:
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fine: " + b"a" * 4000 + b"\r\n")
        s.sendall(b"Connection: close\r\n\r\n")
        status, _ = status_and_body(read_all(s))

    assert status == 200


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, said nothing
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # headers never finished
        b"POST /v1/inbound HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"ref": ',  # body stalled
    ],
    ids=["silent", "incomplete-headers", "stalled-body"],
)
def test_a_stalled_client_is_disconnected_after_the_timeout(
    server: tuple[str, int], sent: bytes
) -> None:
    with connect(server) as s:
        s.sendall(sent)
        started = time.monotonic()
        read_all(s)  # returns when the server closes; raises after 15 s otherwise
        waited = time.monotonic() - started

    assert 0.5 < waited < 10


def test_a_keep_alive_connection_between_requests_is_closed_when_idle(
    server: tuple[str, int],
) -> None:
    with connect(server) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        raw = read_all(s)

    assert raw.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 10
