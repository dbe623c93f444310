"""The cyclic garbage collector's settings for the long-running processes (each API
process, the worker, the scheduler).

CPython's collector walks the young generation every 700 net allocations of container
objects and, every hundred of those, may walk the whole heap. An API process holds
about 160,000 objects after start-up, nearly all of them the modules, classes and
functions of FastAPI, pydantic, SQLAlchemy and redis-py, which never become garbage;
under a flash sale the collector ran about 900 times in 12 s per process, walked that
heap several times, and paused the event loop for up to 150 ms each time.

`settle`, called once start-up is done, moves everything then alive out of the
collector's reach (`gc.freeze`) and lets the young generation grow to
`YOUNG_THRESHOLD` objects between walks, so the collector looks at what requests and
batches allocate, and seldom. Reference counting, which frees almost all of that
garbage, is unchanged. The effect on the API's CPU per request is in BENCHMARKS.md.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
