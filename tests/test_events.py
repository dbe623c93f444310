"""The event-stream contract (`persistence/events.py`) on its own: stream ids, rows read
loosely, and the backlog and lag arithmetic every reader shares."""

from __future__ import annotations

from persistence.events import (
    Entry,
    Lag,
    Row,
    StreamId,
    read_rows,
    stream_backlog,
    stream_lag,
    total_lag,
)


def test_stream_ids_parse_order_and_print_as_redis_does() -> None:
    assert StreamId.parse(b"1700000000000-12") == StreamId(1700000000000, 12)
    assert StreamId.parse("5") == (5, 0)
    assert StreamId.parse("9-1") < StreamId.parse("10-0") < StreamId.parse("10-1")
    assert str(StreamId(10, 3).next()) == "10-4"
    assert Entry(7, "10-3", {}).position == "10-7-3"


def test_a_row_knows_what_can_be_sold_never_below_zero() -> None:
    assert Row("a", "north", 0, 0, 10, 3, 2, 1).available == 5
    assert Row("a", "north", 0, 0, 1, 3, 0, 1).available == 0  # oversold


def test_rows_read_loosely_accept_text_integers_and_cjsons_empty_array() -> None:
    assert read_rows(b'[["a","n",1,"2",3,4,5,6]]') == [Row("a", "n", 1, 2, 3, 4, 5, 6)]
    assert read_rows(b"{}") == []
    assert read_rows(None) == []


def test_backlog_counts_a_stream_whole_until_the_group_reads_it() -> None:
    ours = {"name": b"ledger", "pending": 2, "lag": 3, "last-delivered-id": b"5-0"}
    unknown = {**ours, "lag": None}

    assert stream_backlog([], 7, "ledger") == 7  # no group yet
    assert stream_backlog([ours], 7, "ledger") == 5
    assert stream_backlog([unknown], 7, "ledger") == 9  # undelivered unknown: all of it
    assert stream_backlog([ours], 0, "ledger") == 0


def test_lag_is_the_unacknowledged_entries_and_the_age_of_the_oldest() -> None:
    info = {"name": "ledger", "pending": 1, "lag": 2, "last-delivered-id": "4000-0"}
    pending = {"pending": 1, "min": b"3000-0", "max": b"3000-0", "consumers": []}
    following = [(b"5000-0", {b"t": b"x"})]

    parts = [stream_lag(info, pending, following), stream_lag({**info, "pending": 0}, None, None)]

    assert parts == [(3, 3000), (2, None)]
    assert total_lag(parts, 10_000) == Lag(5, 7.0)
    assert total_lag([], 10_000) == Lag(0, 0.0)
