"""The two cache backends behave alike: the Redis one on the suite's real Redis server, the
in-process one of the embedded default."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.cache.backends import CacheBackend, MemoryBackend, RedisBackend


@pytest.fixture(params=["redis", "memory"])
async def backend(
    request: pytest.FixtureRequest, redis: Redis | None
) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    assert redis is not None
    yield RedisBackend(redis)


async def test_get_many_and_set(backend: CacheBackend):
    await backend.set("k:a", b"1", ttl_ms=60_000)
    await backend.set_many({"k:b": b"2", "k:c": b"3"}, ttl_ms=60_000)
    assert await backend.get_many(["k:a", "k:b", "k:c", "k:none"]) == [b"1", b"2", b"3", None]


async def test_ensure_sets_only_what_is_missing(backend: CacheBackend):
    await backend.set("k:old", b"kept", ttl_ms=60_000)
    assert await backend.ensure({"k:old": b"new", "k:fresh": b"new"}, ttl_ms=60_000) == [
        b"kept",
        b"new",
    ]
    assert await backend.get_many(["k:old", "k:fresh"]) == [b"kept", b"new"]


async def test_the_lock_is_exclusive_and_released_only_by_its_holder(backend: CacheBackend):
    assert await backend.add("k:lock", b"me", ttl_ms=60_000) is True
    assert await backend.add("k:lock", b"you", ttl_ms=60_000) is False
    await backend.delete_if_equal("k:lock", b"you")
    assert await backend.get_many(["k:lock"]) == [b"me"]
    await backend.delete_if_equal("k:lock", b"me")
    assert await backend.get_many(["k:lock"]) == [None]


async def test_entries_carry_their_ttl(redis: Redis | None):
    assert redis is not None
    backend = RedisBackend(redis)
    await backend.set("k:a", b"1", ttl_ms=30_000)
    await backend.ensure({"k:g": b"1"}, ttl_ms=90_000)
    assert 0 < await redis.pttl("k:a") <= 30_000
    assert 30_000 < await redis.pttl("k:g") <= 90_000
