"""Failing open: every backend call goes through `GuardedBackend.call`, which turns any backend
error into UNAVAILABLE (a miss for the caller), counts it (`etter_cache_errors_total`), logs it
once per outage (`cache_unavailable`, then `cache_recovered`) and leaves the backend alone for
`CACHE_RETRY_SECONDS` (the shared `common/circuit_breaker.py`) before trying it again.

Before the first call after an outage, the invalidations the outage swallowed are written
(`Generations.replay`), so nothing stale is read once the backend answers again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog

from common.cache.backends import BACKEND_ERRORS, CacheBackend
from common.cache.invalidation import Generations
from common.circuit_breaker import CircuitBreaker
from common.metrics import CACHE_ERRORS, REDIS_ERRORS

log = structlog.get_logger("etter.cache")

T = TypeVar("T")

INVALIDATION: Final = "invalidation"  # the `cache` label of errors that belong to no one cache


class _Unavailable:
    """The backend could not be used: a miss, and nothing is stored."""


UNAVAILABLE: Final = _Unavailable()


class GuardedBackend:
    def __init__(
        self, backend: CacheBackend, breaker: CircuitBreaker, generations: Generations
    ) -> None:
        self.backend = backend
        self.breaker = breaker
        self.generations = generations

    async def call(
        self, name: str, operation: str, function: Callable[..., Awaitable[T]], *args: Any
    ) -> T | _Unavailable:
        """`function(*args)` on the backend, or UNAVAILABLE (counted, logged once) if it fails."""
        if not await self._available():
            return UNAVAILABLE
        try:
            result = await function(*args)
        except BACKEND_ERRORS as error:
            self.failed(name, operation, error)
            return UNAVAILABLE
        if self.breaker.succeeded():
            log.info("cache_recovered", backend=self.backend.name)
        return result

    async def _available(self) -> bool:
        if not self.breaker.allows():
            return False
        if self.generations.lost:
            try:
                await self.generations.replay()
            except BACKEND_ERRORS as error:
                self.failed(INVALIDATION, "replay", error)
                return False
        return True

    def failed(self, name: str, operation: str, error: BaseException) -> None:
        CACHE_ERRORS.labels(name, operation).inc()
        REDIS_ERRORS.labels("cache").inc()
        if self.breaker.failed():
            log.warning(
                "cache_unavailable",
                backend=self.backend.name,
                cache=name,
                operation=operation,
                error=f"{type(error).__name__}: {error}",
                retry_seconds=self.breaker.retry_seconds,
            )
