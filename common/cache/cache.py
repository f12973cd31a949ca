"""The read path of the best-effort cache: Redis when `REDIS_URL` is set, process memory
otherwise, one interface and one behaviour for both.

Why not cashews: its tags need templates registered up front, its default serialiser is pickle
and its HTTP helpers are `BaseHTTPMiddleware`; what Etter needs (schema JSON, generation tags,
a stampede lock, fail-open with metrics) is this small package over `redis.asyncio`:

- `backends.py`: the Redis and memory backends;
- `entries.py`: keys, generation tokens, the stored envelope;
- `invalidation.py`: a generation per tag, and the invalidations an outage swallowed;
- `single_flight.py`: one computation per key in a process, and the cross-process lock;
- `breaker.py`: failing open behind the shared circuit breaker;
- this module: `Cache`, which puts them together.

A hit is one MGET (the entry and its tags' generations). A miss computes (once per process)
and stores with one SET; only entries declared expensive (`lock=True`, the dashboard) take the
cross-process lock, which costs three more round trips and saves a computation when several
processes miss at once. Services use it through `services/cache_service.py`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from pydantic import TypeAdapter

from common.cache.backends import CacheBackend
from common.cache.breaker import INVALIDATION, GuardedBackend, _Unavailable
from common.cache.entries import GENERATION_TTL_MS, GLOBAL_TAG, MISSING, pack, tag_keys, unpack
from common.cache.invalidation import Generations
from common.cache.single_flight import CrossProcessLock, SingleFlight
from common.circuit_breaker import CircuitBreaker
from common.metrics import CACHE_HITS, CACHE_MISSES

T = TypeVar("T")


class Cache:
    """The process-wide cache (`app.state.cache`). Never raises a backend error to a caller."""

    def __init__(
        self,
        backend: CacheBackend,
        ttls: Mapping[str, int],
        *,
        lock_timeout_ms: int = 3000,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.ttls = dict(ttls)
        self.breaker = CircuitBreaker(retry_seconds, clock)
        self.generations = Generations(backend)
        self.guarded = GuardedBackend(backend, self.breaker, self.generations)
        self.flights = SingleFlight()
        self.lock = CrossProcessLock(self.guarded, lock_timeout_ms, clock)

    def ttl(self, name: str) -> int:
        """Seconds entries of cache `name` live; 0 means that cache is off."""
        return self.ttls.get(name, 0)

    @property
    def healthy(self) -> bool:
        return self.breaker.closed

    # -- reading -------------------------------------------------------------------------------

    async def get_or_compute(
        self,
        name: str,
        adapter: TypeAdapter[T],
        key: str,
        tags: Iterable[str],
        compute: Callable[[], Awaitable[T]],
        *,
        lock: bool = False,
    ) -> T:
        """The cached value of `key`, or `compute()`'s, stored for the next caller. `lock`: the
        value is expensive, let one process compute it while the others wait for it."""
        keys = tag_keys(tags)
        found = await self.guarded.call(name, "get", self.backend.get_many, [*keys, key])
        if isinstance(found, _Unavailable):
            return await self._uncached(key, name, compute)
        value = unpack(found[-1], found[:-1], adapter)
        if value is not MISSING:
            CACHE_HITS.labels(name).inc()
            return value
        generations = await self._generations(name, keys, found[:-1])
        if generations is None:
            return await self._uncached(key, name, compute)
        return await self.flights.run(
            f"{key}|{b','.join(generations).decode()}",
            lambda: self._fill(name, adapter, key, keys, generations, compute, lock),
            CACHE_HITS.labels(name).inc,
        )

    async def _uncached(self, key: str, name: str, compute: Callable[[], Awaitable[T]]) -> T:
        """No generations to vouch for a value: compute (once per process), store nothing."""
        return await self.flights.run(
            f"{key}|-", lambda: self._compute(name, compute), CACHE_HITS.labels(name).inc
        )

    async def _generations(
        self, name: str, keys: list[str], current: list[bytes | None]
    ) -> list[bytes] | None:
        """The tags' generations, each tag without one given a fresh one (see
        `invalidation.py`). None when the backend is unavailable."""
        missing = Generations.missing(keys, current)
        if not missing:
            return [generation for generation in current if generation is not None]
        ensured = await self.guarded.call(
            name, "init", self.backend.ensure, missing, GENERATION_TTL_MS
        )
        if isinstance(ensured, _Unavailable):
            return None
        return Generations.complete(keys, current, dict(zip(missing, ensured, strict=True)))

    async def _compute(self, name: str, compute: Callable[[], Awaitable[T]]) -> T:
        CACHE_MISSES.labels(name).inc()
        return await compute()

    async def _fill(
        self,
        name: str,
        adapter: TypeAdapter[T],
        key: str,
        keys: list[str],
        generations: list[bytes],
        compute: Callable[[], Awaitable[T]],
        lock: bool,
    ) -> T:
        """Compute and store the value; with `lock`, under the cross-process lock."""
        locked: bool | _Unavailable = False
        token = b""
        if lock:
            locked, token = await self.lock.acquire(name, key)
        try:
            if locked is False and lock:  # another process is computing it: wait for it
                value = await self.lock.wait_for_other(name, adapter, key, keys)
                if value is not MISSING:
                    CACHE_HITS.labels(name).inc()
                    return value
            elif locked is True:
                # Another process may have stored it and let go of the lock since our read.
                found = await self.guarded.call(name, "get", self.backend.get_many, [*keys, key])
                if not isinstance(found, _Unavailable) and None not in found[:-1]:
                    value = unpack(found[-1], found[:-1], adapter)
                    if value is not MISSING:
                        CACHE_HITS.labels(name).inc()
                        return value
                    # Invalidated since our read: the newer generations go with our value.
                    generations = [g for g in found[:-1] if g is not None]
            value = await self._compute(name, compute)
            entry = pack(generations, adapter.dump_json(value))
            await self.guarded.call(
                name, "set", self.backend.set, key, entry, self.ttl(name) * 1000
            )
            return value
        finally:
            if locked is True:
                await self.lock.release(name, key, token)

    # -- invalidation --------------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str]) -> None:
        """Give each tag a new generation: every entry that depends on one is stale, everywhere."""
        tags = set(tags)
        if not tags:
            return
        result = await self.guarded.call(INVALIDATION, "invalidate", self.generations.bump, tags)
        if isinstance(result, _Unavailable):
            self.generations.remember_lost(tags)

    async def invalidate_all(self) -> None:
        await self.invalidate([GLOBAL_TAG])
