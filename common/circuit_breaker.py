"""A small circuit breaker for a best-effort dependency (Redis, for the cache and the rate
limiter): after a failure the dependency is left alone for `retry_seconds`, then tried again; a
success closes the circuit. The transitions are returned, so callers log once per outage."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, retry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._closed = True
        self._retry_at = 0.0

    @property
    def closed(self) -> bool:
        """True while the dependency answers (no failure since the last success)."""
        return self._closed

    def allows(self) -> bool:
        """May the dependency be called now? Always while closed; once the retry time has come
        while open."""
        return self._closed or self._clock() >= self._retry_at

    def failed(self) -> bool:
        """A call failed: open (again) for `retry_seconds`. True when this failure opened it."""
        opened = self._closed
        self._closed = False
        self._retry_at = self._clock() + self.retry_seconds
        return opened

    def succeeded(self) -> bool:
        """A call succeeded: close. True when it was open (the dependency recovered)."""
        recovered = not self._closed
        self._closed = True
        return recovered
