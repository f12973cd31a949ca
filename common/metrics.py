"""Prometheus metric definitions, in one place, and what feeds the database ones.

Defined once per process at import, on prometheus_client's default registry (which also
carries the process and platform collectors), so `/metrics` serves them all. Under several
worker processes set PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode): every
worker writes its values to files there and `/metrics` sums them (`render_metrics`); gauges
say how (`multiprocess_mode`). Labels are bounded sets (policy, cache and route *templates*),
never raw paths or ids.

The HTTP metrics are written by `middleware/metrics.py`; the database ones by the engine and
pool events of `install_database_metrics`; the cache and rate-limit ones by their layers.
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

__all__ = [
    "CACHE_ERRORS",
    "CACHE_HITS",
    "CACHE_MISSES",
    "DEPENDENCY_UP",
    "RATE_LIMITED",
    "RATE_LIMIT_FALLBACK",
    "REDIS_ERRORS",
    "REGISTRY",
    "render_metrics",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

RATE_LIMITED = Counter(
    "etter_rate_limited",
    "Requests refused with 429 by the rate limiter, by policy.",
    ["policy"],
    registry=REGISTRY,
)

RATE_LIMIT_FALLBACK = Counter(
    "etter_rate_limit_fallback",
    "Rate-limit decisions taken by the in-process fallback because Redis was unreachable.",
    registry=REGISTRY,
)

# --- cache (services/cache_service.py); label `cache` is a CacheName or "invalidation" -------
# Hit rate per cache: rate(etter_cache_hits_total) / (rate(hits) + rate(misses)).

CACHE_HITS = Counter(
    "etter_cache_hits",
    "Cached values served without computing them (including waits for a concurrent "
    "computation of the same value), by cache.",
    ["cache"],
    registry=REGISTRY,
)

CACHE_MISSES = Counter(
    "etter_cache_misses",
    "Values computed because the cache had no current entry (one per computation), by cache.",
    ["cache"],
    registry=REGISTRY,
)

CACHE_ERRORS = Counter(
    "etter_cache_errors",
    "Cache backend operations that failed; the request went on without the cache.",
    ["cache", "operation"],
    registry=REGISTRY,
)

# --- HTTP (middleware/metrics.py) ------------------------------------------------------------

# Fine below 100 ms (where a cached read lives), and around the 400 ms p95 objective.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)

HTTP_REQUESTS = Counter(
    "etter_http_requests",
    "Requests answered, by method, route template ('unmatched' when no route matched) and "
    "status class (2xx..5xx).",
    ["method", "route", "status_class"],
    registry=REGISTRY,
)

HTTP_DURATION = Histogram(
    "etter_http_request_duration_seconds",
    "Time from the request's arrival in the app to the end of its response, by method and "
    "route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

HTTP_IN_FLIGHT = Gauge(
    "etter_http_requests_in_flight",
    "Requests being served right now (summed over the live worker processes).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

# --- database (install_database_metrics) -----------------------------------------------------

DB_STATEMENTS_PER_REQUEST = Histogram(
    "etter_db_statements_per_request",
    "SQL statements a request sent (BEGIN and COMMIT not counted), by route template.",
    ["route"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
    registry=REGISTRY,
)

DB_STATEMENT_DURATION = Histogram(
    "etter_db_statement_duration_seconds",
    "Time PostgreSQL (or SQLite) took per SQL statement, as the driver saw it.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0),
    registry=REGISTRY,
)

DB_POOL_SIZE = Gauge(
    "etter_db_pool_size",
    "Connections the pool keeps (DB_POOL_SIZE), summed over the live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

DB_POOL_MAX = Gauge(
    "etter_db_pool_max",
    "Most connections the pool may open (DB_POOL_SIZE + DB_MAX_OVERFLOW), summed over workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

DB_POOL_CHECKED_OUT = Gauge(
    "etter_db_pool_checked_out",
    "Connections lent to requests right now, summed over the live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

DB_POOL_OVERFLOW = Gauge(
    "etter_db_pool_overflow",
    "Connections open beyond DB_POOL_SIZE right now (negative: fewer than the pool size are "
    "open yet), summed over the live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

DB_POOL_WAITING = Gauge(
    "etter_db_pool_waiting",
    "Requests waiting for a pool connection right now, summed over the live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

# --- Redis, readiness, build ------------------------------------------------------------------

REDIS_ERRORS = Counter(
    "etter_redis_errors",
    "Redis operations that failed, by the component that made them (cache, rate_limit, health).",
    ["component"],
    registry=REGISTRY,
)
for _component in ("cache", "rate_limit", "health"):
    REDIS_ERRORS.labels(_component)  # every series exists from the start, at 0

DEPENDENCY_UP = Gauge(
    "etter_dependency_up",
    "1 when the last readiness probe reached the dependency (database, redis), 0 when not.",
    ["dependency"],
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)

BUILD_INFO = Gauge(
    "etter_build_info",
    "Always 1; the labels name the running version and git revision.",
    ["version", "revision"],
    multiprocess_mode="livemax",
    registry=REGISTRY,
)


@functools.cache
def git_revision(configured: str | None) -> str:
    """GIT_SHA / ETTER_REVISION when set, else the checkout's HEAD, else "unknown"."""
    if configured:
        return configured
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH, no input
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=2,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def record_build_info(version: str, revision: str) -> None:
    BUILD_INFO.labels(version=version, revision=revision).set(1)


# --- statements per request -------------------------------------------------------------------


class StatementCount:
    """The statements of one request; the metrics middleware owns one per request."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


# Set by the metrics middleware for the request's task; SQLAlchemy's greenlets run the engine
# events in that task's context, so the listener finds the request's counter.
current_statements: contextvars.ContextVar[StatementCount | None] = contextvars.ContextVar(
    "etter_statements", default=None
)


def install_database_metrics(engine: AsyncEngine) -> Callable[[], None]:
    """Statement latency and per-request counts, and the pool's gauges, from engine events.

    Returns what to call when the engine is disposed: it takes this engine's share out of the
    process's pool gauges (tests run many engines in one process; production runs one).
    """
    sync_engine = engine.sync_engine
    pool = sync_engine.pool
    share = {DB_POOL_SIZE: 0.0, DB_POOL_MAX: 0.0, DB_POOL_CHECKED_OUT: 0.0, DB_POOL_OVERFLOW: 0.0}

    def put(gauge: Gauge, value: float) -> None:
        gauge.inc(value - share[gauge])
        share[gauge] = value

    if isinstance(pool, QueuePool):
        put(DB_POOL_SIZE, pool.size())
        put(DB_POOL_MAX, pool.size() + max(pool._max_overflow, 0))
        pool.__class__ = _waiting_counted(type(pool))
    observe = DB_STATEMENT_DURATION.observe
    perf_counter = time.perf_counter

    def _start(conn: Any, _cursor: Any, _statement: str, _params: Any, *_: Any) -> None:
        conn.info.setdefault("etter_metrics_start", []).append(perf_counter())
        counter = current_statements.get()
        if counter is not None:
            counter.count += 1

    def _finish(conn: Any, *_: Any) -> None:
        starts = conn.info.get("etter_metrics_start")
        if starts:
            observe(perf_counter() - starts.pop())

    def _failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and connection.info.get("etter_metrics_start"):
            observe(perf_counter() - connection.info["etter_metrics_start"].pop())

    def _pool_state() -> None:
        current = sync_engine.pool
        if isinstance(current, QueuePool):
            put(DB_POOL_CHECKED_OUT, current.checkedout())
            put(DB_POOL_OVERFLOW, max(current.overflow(), 0))

    def _adopt_pool(*_: Any) -> None:
        # A pool that engine.dispose() recreated reports to this engine's gauges too.
        sync_engine.pool._etter_on_change = _pool_state  # type: ignore[attr-defined]

    pool._etter_on_change = _pool_state  # type: ignore[attr-defined]
    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", _start),
        ("after_cursor_execute", _finish),
        ("handle_error", _failed),
        ("connect", _adopt_pool),
    ]
    for name, listener in listeners:
        event.listen(sync_engine, name, listener)

    def forget() -> None:
        for name, listener in listeners:
            if event.contains(sync_engine, name, listener):
                event.remove(sync_engine, name, listener)
        for gauge in share:
            put(gauge, 0.0)

    return forget


_waiting_classes: dict[type, type] = {}


def _waiting_counted(pool_class: type[QueuePool]) -> type[QueuePool]:
    """The pool's class, reporting to the gauges after each checkout and return, and counting
    the checkouts in progress (waiting for a free connection) in DB_POOL_WAITING.

    SQLAlchemy has no event before a checkout, and its checkin event fires before the
    connection is back in the queue; QueuePool's own hooks (`_do_get`, which waits until a
    connection is free or DB_POOL_TIMEOUT passes, and `_do_return_conn`) are exact. A class
    rather than instance attributes, so the pool that `engine.dispose()` recreates (of the same
    class) is counted too.
    """
    if getattr(pool_class, "_etter_counts_waits", False):
        return pool_class
    if pool_class not in _waiting_classes:

        def _report(pool: QueuePool) -> None:
            on_change = getattr(pool, "_etter_on_change", None)
            if on_change is not None:
                on_change()

        def _do_get(self: QueuePool) -> Any:
            DB_POOL_WAITING.inc()
            try:
                return pool_class._do_get(self)
            finally:
                DB_POOL_WAITING.dec()
                _report(self)

        def _do_return_conn(self: QueuePool, record: Any) -> None:
            try:
                pool_class._do_return_conn(self, record)
            finally:
                _report(self)

        _waiting_classes[pool_class] = type(
            pool_class.__name__,
            (pool_class,),
            {
                "_do_get": _do_get,
                "_do_return_conn": _do_return_conn,
                "_etter_counts_waits": True,
            },
        )
    return _waiting_classes[pool_class]


# --- exposition ------------------------------------------------------------------------------

_PID_IN_FILE = re.compile(r"_(\d+)\.db$")


class WorkerProcessCollector:
    """process_* metrics of every live worker (multiprocess mode), labelled by pid.

    prometheus_client's own process collector reports only the process it runs in; under
    several workers that is whichever served the scrape. This reads /proc for each pid that
    has metric files in the multiprocess directory and is still alive.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _pids(self) -> list[int]:
        pids = set()
        for path in Path(self.directory).glob("*.db"):
            match = _PID_IN_FILE.search(path.name)
            if match and Path(f"/proc/{match.group(1)}").exists():
                pids.add(int(match.group(1)))
        return sorted(pids)

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self._pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
            for metric in collector.collect():
                target = merged.setdefault(
                    metric.name, Metric(metric.name, metric.documentation, metric.type)
                )
                for sample in metric.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(merged.values())


def render_metrics() -> bytes:
    """The exposition text: this process's registry, or every worker's sum in multiprocess
    mode. Blocking file I/O in multiprocess mode: call it off the event loop."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(WorkerProcessCollector(directory))
        return generate_latest(registry)
    return generate_latest(REGISTRY)
