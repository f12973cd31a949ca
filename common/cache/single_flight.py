"""Stampede protection. In one process, concurrent misses of one key (at the same generations)
share one computation (`SingleFlight`). Across processes, a short lock in the backend
(`SET NX PX`, released by compare-and-delete) lets one process compute while the others poll for
its result, for at most `CACHE_LOCK_TIMEOUT_MS`, after which they compute themselves rather than
fail (`CrossProcessLock`): worth its round trips only for entries that are expensive to compute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import TypeAdapter

from common.cache.breaker import GuardedBackend, _Unavailable
from common.cache.entries import MISSING, new_generation, unpack

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def run(
        self, flight: str, run: Callable[[], Awaitable[T]], shared: Callable[[], None]
    ) -> T:
        """Concurrent callers of one flight share the first caller's result (`shared()` is
        called for each caller served so)."""
        leader = self._inflight.get(flight)
        if leader is not None:
            await asyncio.wait((leader,))
            if not leader.cancelled():
                shared()
                return leader.result()
            return await run()  # the leader failed: its error was its own; try for ourselves
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        try:
            value = await run()
        except BaseException:
            future.cancel()  # waiters compute for themselves; nothing is left unretrieved
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._inflight.get(flight) is future:
                del self._inflight[flight]


class CrossProcessLock:
    def __init__(
        self,
        guarded: GuardedBackend,
        timeout_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guarded = guarded
        self.timeout_ms = timeout_ms
        self._clock = clock

    async def acquire(self, name: str, key: str) -> tuple[bool | _Unavailable, bytes]:
        """(True, token) when this process holds the lock of `key`; False when another does."""
        token = new_generation()
        backend = self.guarded.backend
        locked = await self.guarded.call(
            name, "lock", backend.add, f"{key}:lock", token, self.timeout_ms
        )
        return locked, token

    async def release(self, name: str, key: str, token: bytes) -> None:
        backend = self.guarded.backend
        await self.guarded.call(name, "unlock", backend.delete_if_equal, f"{key}:lock", token)

    async def wait_for_other(
        self, name: str, adapter: TypeAdapter[T], key: str, tag_keys: list[str]
    ) -> Any:
        """The other process's value once stored, or MISSING if it gave up or took too long."""
        deadline = self._clock() + self.timeout_ms / 1000
        delay = 0.005
        backend = self.guarded.backend
        while self._clock() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            found = await self.guarded.call(
                name, "get", backend.get_many, [*tag_keys, key, f"{key}:lock"]
            )
            if isinstance(found, _Unavailable):
                return MISSING
            value = unpack(found[-2], found[:-2], adapter)
            if value is not MISSING or found[-1] is None:
                return value
        return MISSING
