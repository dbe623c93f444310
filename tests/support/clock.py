"""Time for tests that move it by hand."""

from __future__ import annotations


class ManualClock:
    """Tests move time by hand; scripts take "now" as an argument, never read it."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)
