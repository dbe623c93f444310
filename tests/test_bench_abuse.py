"""scripts/bench_abuse.py: a tiny run reports every phase and every attack is answered."""

from __future__ import annotations

import json

import bench_abuse
import pytest

from tests.support.postgres import need_postgres
from tests.support.services import PG_URL, REDIS_URL, need_redis


def test_a_tiny_run_reports_every_phase(capsys: pytest.CaptureFixture[str]) -> None:
    need_redis()
    need_postgres()
    argv = ["--redis-url", REDIS_URL, "--admin-dsn", PG_URL, "--seconds", "0.5"]
    argv += ["--settle", "0.5", "--big-header-clients", "1", "--big-header-mb", "0.1"]
    argv += ["--stalled-headers", "3", "--stalled-bodies", "3", "--scrape-clients", "2"]
    argv += ["--feed-clients", "25", "--feed-keys", "1"]  # 5 past the per-key limit of 20

    assert bench_abuse.main(argv) == 0

    result = json.loads(capsys.readouterr().out)
    assert list(result) == list(bench_abuse.PHASES)
    for phase in result.values():
        assert phase["probes"] > 0 and phase["probe_failures"] == {}
        assert phase["healthz_ms"]["p99"] > 0 and phase["checkout_ms"]["p99"] > 0
    # The server closes with the rest of the header unread, which may reset the
    # connection before the client reads the 431: never anything but those two.
    answers = set(result["big_headers"]["big_header_answers"])
    assert "HTTP/1.1 431 Request Header Fields Too Large" in answers
    assert answers <= {"HTTP/1.1 431 Request Header Fields Too Large", "closed, no answer"}
    scrapes = result["scrape_flood"]["flood_answers"]
    assert set(scrapes) == {"/metrics 200", "/readyz 200"}
    assert set(result["ping_flood"]["flood_answers"]) == {"/v1/ping 200"}
    feeds = result["feed_flood"]["feed_answers"]
    assert feeds["feed 200"] == 20 and feeds["feed 429"] >= 5 and len(feeds) == 2
    assert set(result["feed_flood"]["redis_connected_clients"]) == {"before", "during", "after"}
