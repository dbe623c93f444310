"""The long-running processes take what start-up left alive out of the collector's
walks, and let the young generation grow before each one."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from inventory_cache import heap
from inventory_cache.api import main


@pytest.fixture
def collector() -> Iterator[None]:
    """This test process's collector, as it was, afterwards."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settling_freezes_what_is_alive_and_raises_the_young_threshold(collector: None) -> None:
    kept = [object() for _ in range(10)]
    _, middle, old = gc.get_threshold()

    heap.settle()

    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, old)


def test_the_server_s_app_factory_settles_the_collector_once_the_app_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []
    app = object()

    def create_app(settings: object) -> object:
        steps.append("built")
        return app

    monkeypatch.setattr(main, "create_app", create_app)
    monkeypatch.setattr(heap, "settle", lambda: steps.append("settled"))

    served: object = main.app_from_env()

    assert served is app
    assert steps == ["built", "settled"]
