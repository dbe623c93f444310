"""The availability read's one-pass path answers exactly what the full path answers, and
steps aside for the hashes only the full path understands (bundles, incoming stock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inventory_cache.engine import parse_stock
from inventory_cache.engine.reads import Reads, plain_availability

LOCATIONS = ["north", "south", "b", "a-1", "zz"]
fields = st.dictionaries(
    st.tuples(st.sampled_from(["o", "l", "s", "q"]), st.sampled_from(LOCATIONS)).map(
        lambda kl: f"{kl[0]}:{kl[1]}".encode()
    ),
    st.integers(min_value=-50, max_value=10**6).map(lambda n: str(n).encode()),
    max_size=12,
)


@given(raw=fields, version=st.integers(0, 99))
def test_a_plain_stock_hash_reads_as_the_full_path_reads_it(
    raw: dict[bytes, bytes], version: int
) -> None:
    raw = {**raw, b"v": str(version).encode()}

    assert plain_availability("S1", raw) == Reads._availability("S1", parse_stock("S1", raw))


@given(raw=fields)
def test_a_bundle_is_left_to_the_full_path(raw: dict[bytes, bytes]) -> None:
    assert plain_availability("B1", {**raw, b"bdef": b'[["S1", 2]]'}) is None


@given(raw=fields)
def test_incoming_stock_is_left_to_the_full_path(raw: dict[bytes, bytes]) -> None:
    incoming = {b"n:PO-1": b'["north", 5, 1800000000000]'}

    assert plain_availability("S1", {**raw, **incoming}) is None


def test_locations_come_sorted_and_never_below_zero() -> None:
    raw = {b"o:south": b"3", b"l:south": b"5", b"o:north": b"10", b"s:north": b"2"}

    found = plain_availability("S1", raw)

    assert found is not None
    assert list(found.locations.items()) == [("north", 8), ("south", 0)]
    assert (found.available, found.in_stock) == (8, True)
