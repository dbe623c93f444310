"""Prometheus metrics of one API process (the ASGI layer, `gateway.py`, counts requests).

Each app owns its registry (tests build many apps in one process). Requests are labelled
by route *template* (`/v1/reservations/{order_id}`), never by raw path, so cardinality
stays bounded; a request no route matched is labelled `unmatched`. The worker's lag
(measured from the streams, `lag.py`, so it is right even when the worker runs elsewhere
or not at all) and PostgreSQL's state come from the process's status monitor
(`status.py`): a scrape costs no Redis or PostgreSQL call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inventory_cache.api.nearcache import NearCache
from inventory_cache.api.status import Snapshot
from inventory_cache.archive import OrderArchive
from inventory_cache.engine import StockEngine
from inventory_cache.lag import LagGauges

T = TypeVar("T")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inventory_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inventory_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reservations = Counter(
            "inventory_reservations",
            "Reservation attempts by result (ok, insufficient_stock, limit_exceeded, other error).",
            ["result"],
            registry=self.registry,
        )
        self.engine_calls = Histogram(
            "inventory_engine_call_duration_seconds",
            "Latency of engine operations (their Lua scripts, pipelined) as the API sees it.",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # The gauges the worker exports too (worker.py): one figure, whoever reports it.
        self.lag = LagGauges(self.registry)
        self.postgres_up = Gauge(
            "inventory_postgres_up",
            "1 when PostgreSQL answered the last check, 0 while it is away (degraded).",
            registry=self.registry,
        )
        self.redis_ready = Gauge(
            "inventory_redis_ready",
            "1 when Redis can serve (reachable, every slot group warmed up), else 0.",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        pair = self._children.get(key)
        if pair is None:  # label lookups cost more than the increments: do them once
            pair = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    async def timed(self, op: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        finally:
            self.engine_calls.labels(op).observe(time.perf_counter() - start)

    def watch_near_cache(self, cache: NearCache) -> None:
        self.registry.register(_NearCacheCollector(cache))

    def watch_engine(self, engine: StockEngine) -> None:
        self.registry.register(_RedisFullCollector(engine))

    def watch_archive(self, archive: OrderArchive) -> None:
        self.registry.register(_ArchiveCollector(archive))

    def render(self, status: Snapshot) -> bytes:
        self.postgres_up.set(int(status.postgres_up))
        self.redis_ready.set(int(status.redis_ready))
        if status.lag is not None:  # unmeasured (Redis away): the last figure stays
            self.lag.set(status.lag)
        return generate_latest(self.registry)


class _NearCacheCollector(Collector):
    """The near-cache counts its own hits and misses (plain ints); scrapes read them."""

    def __init__(self, cache: NearCache) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "inventory_near_cache_reads",
            "Availability reads by near-cache outcome (a hit includes joining a pending read).",
            labels=["outcome"],
        )
        family.add_metric(["hit"], self._cache.hits)
        family.add_metric(["miss"], self._cache.misses)
        yield family


class _RedisFullCollector(Collector):
    """Calls Redis refused for memory over `maxmemory`, counted by the engine's batcher."""

    def __init__(self, engine: StockEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "inventory_redis_oom_refusals",
            "Redis calls refused because Redis memory is over maxmemory (answered 503).",
        )
        family.add_metric([], self._engine.batcher.oom_refusals)
        yield family


class _ArchiveCollector(Collector):
    """How often an order lookup reached PostgreSQL, and the filter that spares the rest
    (`archive.py`)."""

    def __init__(self, archive: OrderArchive) -> None:
        self._archive = archive

    def collect(self) -> Iterable[Metric]:
        lookups = CounterMetricFamily(
            "inventory_archive_order_lookups",
            "Lookups of order ids Redis does not hold: ruled_out by the finished-ids filter,"
            " or asked of PostgreSQL.",
            labels=["outcome"],
        )
        for outcome, count in self._archive.lookups.items():
            lookups.add_metric([outcome], count)
        yield lookups
        if (f := self._archive.filter) is not None:
            ids = GaugeMetricFamily(
                "inventory_archive_filter_ids",
                "Finished order ids read into the filter, and the number it is sized for.",
                labels=["of"],
            )
            ids.add_metric(["read"], f.ids)
            ids.add_metric(["capacity"], f.capacity)
            yield ids
