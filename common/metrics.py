"""Prometheus metric definitions, in one place.

Defined once per process at import, on prometheus_client's default registry (which also
carries the process and platform collectors), so `/metrics` serves them all with
`prometheus_client.generate_latest(REGISTRY)`. Labels are bounded sets (policy names, route
templates), never raw paths or ids.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter

__all__ = [
    "CACHE_ERRORS",
    "CACHE_HITS",
    "CACHE_MISSES",
    "RATE_LIMITED",
    "RATE_LIMIT_FALLBACK",
    "REGISTRY",
]

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
