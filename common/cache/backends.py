"""Where cache entries live: Redis when `REDIS_URL` is set, process memory otherwise. One small
interface, the operations the cache needs and nothing else."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

# What a backend call may fail with: a miss for the cache, never an error for a request.
BACKEND_ERRORS: Final = (RedisError, OSError, TimeoutError)


class CacheBackend(Protocol):
    name: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    async def set_many(self, items: Mapping[str, bytes], ttl_ms: int) -> None: ...

    async def ensure(self, items: Mapping[str, bytes], ttl_ms: int) -> list[bytes]:
        """Set each key that does not exist yet; the values the keys hold afterwards."""
        ...

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        """Set `key` only if it does not exist; True when it was set."""
        ...

    async def delete_if_equal(self, key: str, value: bytes) -> None: ...


# Compare-and-delete: a lock whose holder overran its timeout is never released by it.
_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisBackend:
    name = "redis"

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._unlock = redis.register_script(_UNLOCK_SCRIPT)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.redis.mget(keys)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.redis.set(key, value, px=ttl_ms)

    async def set_many(self, items: Mapping[str, bytes], ttl_ms: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=ttl_ms)
            await pipe.execute()

    async def ensure(self, items: Mapping[str, bytes], ttl_ms: int) -> list[bytes]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=ttl_ms, nx=True, get=True)  # Redis 7: the old value
            before = await pipe.execute()
        return [
            old if old is not None else new for old, new in zip(before, items.values(), strict=True)
        ]

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        return bool(await self.redis.set(key, value, px=ttl_ms, nx=True))

    async def delete_if_equal(self, key: str, value: bytes) -> None:
        await self._unlock(keys=[key], args=[value])


class MemoryBackend:
    """The embedded default's backend: one process, bounded, least recently used dropped."""

    name = "memory"

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def stored_keys(self) -> list[str]:
        return list(self._data)

    def _get(self, key: str) -> bytes | None:
        found = self._data.get(key)
        if found is None:
            return None
        value, expires_at = found
        if expires_at <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._data[key] = (value, self._clock() + ttl_ms / 1000)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._put(key, value, ttl_ms)

    async def set_many(self, items: Mapping[str, bytes], ttl_ms: int) -> None:
        for key, value in items.items():
            self._put(key, value, ttl_ms)

    async def ensure(self, items: Mapping[str, bytes], ttl_ms: int) -> list[bytes]:
        values = []
        for key, value in items.items():
            existing = self._get(key)
            if existing is None:
                self._put(key, value, ttl_ms)
            values.append(value if existing is None else existing)
        return values

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        if self._get(key) is not None:
            return False
        self._put(key, value, ttl_ms)
        return True

    async def delete_if_equal(self, key: str, value: bytes) -> None:
        if self._get(key) == value:
            del self._data[key]
