"""The cache on its own: entries, generations, single flight, the cross-process lock, failing
open, and the decorator's keys. Backends are real (the in-memory one; a wrapper makes it fail on
demand); "two processes" are two `Cache` objects on one backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter
from redis.exceptions import ConnectionError as RedisConnectionError

from common.cache import breaker
from common.cache.backends import MemoryBackend, RedisBackend
from common.cache.entries import GLOBAL_TAG, KEY_PREFIX, pack, tag_key
from common.cache.invalidation import MAX_LOST_TAGS
from common.enums import Role
from common.principal import Principal
from services.cache_service import (
    Cache,
    CacheName,
    RequestCache,
    cached,
    create_cache,
    schema_version,
    tenant_scope,
)
from tests.conftest import make_settings
from tests.fixtures.cache import CacheCounts


class Item(BaseModel):
    id: int
    name: str


ITEM = TypeAdapter(Item)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyBackend(MemoryBackend):
    """The memory backend, failing like an unreachable Redis while `down`."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock=clock) if clock else super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")

    async def get_many(self, keys: Any) -> list[bytes | None]:
        self._check()
        return await super().get_many(keys)

    async def set(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._check()
        await super().set(key, value, ttl_ms)

    async def set_many(self, items: Any, ttl_ms: int) -> None:
        self._check()
        await super().set_many(items, ttl_ms)

    async def add(self, key: str, value: bytes, ttl_ms: int) -> bool:
        self._check()
        return await super().add(key, value, ttl_ms)

    async def delete_if_equal(self, key: str, value: bytes) -> None:
        self._check()
        await super().delete_if_equal(key, value)


@dataclass
class Computation:
    """A counted computation of an `Item`, optionally held until `release` is set."""

    name: str = "one"
    calls: int = 0
    release: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self) -> Item:
        self.calls += 1
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        return Item(id=self.calls, name=self.name)


def make_cache(backend: Any = None, **options: Any) -> Cache:
    return Cache(backend or MemoryBackend(), ttls={"unit": 60}, **options)


async def get(
    cache: Cache, compute: Callable[[], Awaitable[Item]], *tags: str, lock: bool = False
) -> Item:
    return await cache.get_or_compute(
        "unit", ITEM, f"{KEY_PREFIX}:test:k", tags, compute, lock=lock
    )


# --- the memory backend ----------------------------------------------------------------------


async def test_memory_backend_expires_entries_and_keeps_its_bound():
    clock = Clock()
    backend = MemoryBackend(max_entries=3, clock=clock)
    await backend.set("a", b"1", ttl_ms=1000)
    assert await backend.get_many(["a", "b"]) == [b"1", None]
    clock.now += 1.0
    assert await backend.get_many(["a"]) == [None]

    for key in "wxyz":
        await backend.set(key, key.encode(), ttl_ms=60_000)
    await backend.get_many(["x"])  # x is now the most recently used
    await backend.set("q", b"q", ttl_ms=60_000)
    assert len(backend.stored_keys()) == 3
    assert sorted(backend.stored_keys()) == ["q", "x", "z"]


async def test_memory_backend_lock_primitives():
    backend = MemoryBackend()
    assert await backend.add("lock", b"me", 1000) is True
    assert await backend.add("lock", b"you", 1000) is False
    await backend.delete_if_equal("lock", b"you")  # not the holder: nothing happens
    assert await backend.get_many(["lock"]) == [b"me"]
    await backend.delete_if_equal("lock", b"me")
    assert await backend.add("lock", b"you", 1000) is True


# --- entries and generations -----------------------------------------------------------------


async def test_miss_then_hit_returns_the_schema_and_counts():
    cache, compute = make_cache(), Computation()
    before = CacheCounts.of("unit")
    first = await get(cache, compute, "a")
    second = await get(cache, compute, "a")
    assert first == second == Item(id=1, name="one")
    assert isinstance(second, Item)
    assert compute.calls == 1
    delta = CacheCounts.of("unit") - before
    assert (delta.hits, delta.misses) == (1, 1)


async def test_invalidating_a_tag_drops_only_the_entries_that_depend_on_it():
    cache = make_cache()
    on_a, on_b = Computation("a"), Computation("b")
    key_a, key_b = f"{KEY_PREFIX}:test:a", f"{KEY_PREFIX}:test:b"
    await cache.get_or_compute("unit", ITEM, key_a, ["a"], on_a)
    await cache.get_or_compute("unit", ITEM, key_b, ["b"], on_b)
    await cache.invalidate(["a"])
    await cache.get_or_compute("unit", ITEM, key_a, ["a"], on_a)
    await cache.get_or_compute("unit", ITEM, key_b, ["b"], on_b)
    assert (on_a.calls, on_b.calls) == (2, 1)

    await cache.invalidate_all()  # the global tag: everything
    await cache.get_or_compute("unit", ITEM, key_b, ["b"], on_b)
    assert on_b.calls == 2


async def test_a_write_during_the_computation_leaves_no_stale_entry():
    """Generations are read before the computation: a value computed from data that a
    concurrent write (committed and invalidated meanwhile) made stale is never served."""
    cache = make_cache()
    calls = 0

    async def read_then_write_lands() -> Item:
        nonlocal calls
        calls += 1
        value = Item(id=calls, name="read before the write")
        if calls == 1:
            await cache.invalidate(["a"])  # the write commits while we compute
        return value

    await get(cache, read_then_write_lands, "a")
    again = await get(cache, read_then_write_lands, "a")
    assert calls == 2
    assert again.id == 2


async def test_generations_are_tokens_that_never_repeat():
    backend = MemoryBackend()
    cache = make_cache(backend)
    seen = set()
    for _ in range(50):
        await cache.invalidate(["a"])
        seen.add((await backend.get_many([tag_key("a")]))[0])
    assert len(seen) == 50


async def test_a_lost_generation_key_never_makes_an_old_entry_current_again():
    """Redis may evict or expire a tag's generation key; entries record only real tokens, so
    the stale entry of a write stays stale even when the tag's key is gone."""
    backend = MemoryBackend()
    cache, compute = make_cache(backend), Computation()
    await get(cache, compute, "a")
    await cache.invalidate(["a"])  # a write
    [generation] = await backend.get_many([tag_key("a")])
    await backend.delete_if_equal(tag_key("a"), generation)  # ... and the key is evicted
    assert (await get(cache, compute, "a")).id == 2
    assert (await get(cache, compute, "a")).id == 2
    assert compute.calls == 2


async def test_an_entry_of_another_format_or_shape_is_a_miss_and_is_replaced():
    backend = MemoryBackend()
    cache, compute = make_cache(backend), Computation()
    key = f"{KEY_PREFIX}:test:k"
    await backend.set(key, b"\x80\x04pickle?", 60_000)
    assert await get(cache, compute) == Item(id=1, name="one")
    [generation] = await backend.get_many([tag_key(GLOBAL_TAG)])
    await backend.set(key, pack([generation], b'{"id": "not a number"}'), 60_000)
    assert await get(cache, compute) == Item(id=2, name="one")
    assert await get(cache, compute) == Item(id=2, name="one")
    assert compute.calls == 2


# --- stampede ----------------------------------------------------------------------------------


async def test_concurrent_misses_in_one_process_compute_once():
    backend = FlakyBackend()
    cache = make_cache(backend)
    compute = Computation(release=asyncio.Event())
    before = CacheCounts.of("unit")
    tasks = [asyncio.create_task(get(cache, compute, "a")) for _ in range(50)]
    await compute.started.wait()
    compute.release.set()
    results = await asyncio.gather(*tasks)
    assert compute.calls == 1
    assert {r.id for r in results} == {1}
    delta = CacheCounts.of("unit") - before
    assert (delta.hits, delta.misses) == (49, 1)
    # One read each, then one store: the waiters never poll the backend, they wait in process
    # for the computing caller's result.
    assert backend.calls <= 50 + 2


async def test_when_the_computing_caller_fails_the_others_compute_for_themselves():
    cache = make_cache()
    release = asyncio.Event()
    calls = 0

    async def first_fails() -> Item:
        nonlocal calls
        calls += 1
        mine = calls
        await release.wait()
        if mine == 1:
            raise RuntimeError("the leader's own database error")
        return Item(id=mine, name="ok")

    tasks = [asyncio.create_task(get(cache, first_fails)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert all(isinstance(r, Item) for r in results[1:])


async def test_two_processes_compute_once_thanks_to_the_shared_lock():
    shared = MemoryBackend()
    first, second = make_cache(shared), make_cache(shared)
    compute = Computation(release=asyncio.Event())
    leader = asyncio.create_task(get(first, compute, "a", lock=True))
    await compute.started.wait()
    follower = asyncio.create_task(get(second, compute, "a", lock=True))
    await asyncio.sleep(0.02)  # the follower is polling for the leader's value
    assert not follower.done()
    compute.release.set()
    assert await leader == await follower == Item(id=1, name="one")
    assert compute.calls == 1
    assert not [k for k in shared.stored_keys() if k.endswith(":lock")]  # released


async def test_a_lock_held_too_long_stops_nobody():
    shared = MemoryBackend()
    await shared.add(f"{KEY_PREFIX}:test:k:lock", b"a crashed process", 60_000)
    cache, compute = make_cache(shared, lock_timeout_ms=50), Computation()
    assert await get(cache, compute, lock=True) == Item(id=1, name="one")
    assert compute.calls == 1


async def test_a_cheap_miss_costs_two_round_trips_and_takes_no_lock():
    backend = FlakyBackend()
    cache, compute = make_cache(backend), Computation()
    await get(cache, compute, "a")  # gives the tags their first generations
    await cache.invalidate(["a"])
    calls = backend.calls
    assert (await get(cache, compute, "a")).id == 2
    assert backend.calls - calls == 2  # one MGET, one SET
    assert not [k for k in backend.stored_keys() if k.endswith(":lock")]


async def test_two_processes_missing_a_cheap_entry_each_compute_it():
    shared = MemoryBackend()
    first, second = make_cache(shared), make_cache(shared)
    compute = Computation(release=asyncio.Event())
    tasks = [asyncio.create_task(get(cache, compute, "a")) for cache in (first, second)]
    for _ in range(10):  # both read, miss and start computing
        await asyncio.sleep(0)
    compute.release.set()
    await asyncio.gather(*tasks)
    assert compute.calls == 2  # no lock: each process computes once


# --- failing open ----------------------------------------------------------------------------


class LogRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def warning(self, event: str, **_: Any) -> None:
        self.events.append(("warning", event))

    def info(self, event: str, **_: Any) -> None:
        self.events.append(("info", event))


async def test_backend_errors_are_misses_counted_and_logged_once(monkeypatch):
    recorder = LogRecorder()
    monkeypatch.setattr(breaker, "log", recorder)
    backend = FlakyBackend()
    cache, compute = make_cache(backend, retry_seconds=0), Computation()
    await get(cache, compute, "a")

    backend.down = True
    before = CacheCounts.of("unit")
    for _ in range(3):
        assert await get(cache, compute, "a") == Item(id=compute.calls, name="one")
    assert compute.calls == 4  # every call computed: nothing could be read
    assert (CacheCounts.of("unit") - before).errors == 3
    assert recorder.events == [("warning", "cache_unavailable")]
    assert not cache.healthy

    backend.down = False
    assert (await get(cache, compute, "a")).id == 1  # reads resumed: the entry from before
    other = Computation()
    for _ in range(2):
        await cache.get_or_compute("unit", ITEM, f"{KEY_PREFIX}:test:other", [], other)
    assert other.calls == 1  # and so did stores
    assert recorder.events == [("warning", "cache_unavailable"), ("info", "cache_recovered")]
    assert cache.healthy


async def test_after_an_error_the_backend_is_left_alone_for_the_retry_period():
    clock = Clock()
    backend = FlakyBackend(clock)
    cache, compute = make_cache(backend, retry_seconds=5, clock=clock), Computation()
    backend.down = True
    await get(cache, compute)
    calls = backend.calls
    await get(cache, compute)
    await get(cache, compute)
    assert backend.calls == calls  # not tried within the retry period
    backend.down = False
    clock.now += 5
    await get(cache, compute)
    assert backend.calls > calls


async def test_invalidations_lost_in_an_outage_are_written_before_the_next_read():
    backend = FlakyBackend()
    cache, compute = make_cache(backend, retry_seconds=0), Computation()
    await get(cache, compute, "a")
    backend.down = True
    await cache.invalidate(["a"])  # a write committed while the backend was unreachable
    backend.down = False
    assert (await get(cache, compute, "a")).id == 2  # not the entry from before the write


async def test_too_many_lost_invalidations_invalidate_everything():
    backend = FlakyBackend()
    cache, compute = make_cache(backend, retry_seconds=0), Computation()
    await get(cache, compute, "unrelated")
    backend.down = True
    await cache.invalidate([f"t:{n}" for n in range(MAX_LOST_TAGS + 1)])
    backend.down = False
    assert (await get(cache, compute, "unrelated")).id == 2
    assert (await backend.get_many([tag_key(GLOBAL_TAG)]))[0] is not None


# --- the decorator and keys --------------------------------------------------------------------


class Service:
    def __init__(self, cache: RequestCache | None, company_id: int = 1) -> None:
        self.cache = cache
        self.principal = Principal(user_id=1, company_id=company_id, role=Role.MEMBER, email="m@x")
        self.calls = 0

    @cached(
        CacheName.AUTOCOMPLETE,
        scope=lambda self, **_: tenant_scope(self.principal.company_id),
        tags=lambda self, **_: [f"users:{self.principal.company_id}"],
        key=lambda self, q, limit=10: (q.lower(), limit),
    )
    async def search(self, q: str, limit: int = 10) -> list[Item]:
        self.calls += 1
        return [Item(id=self.principal.company_id, name=q)]


def request_cache(backend: MemoryBackend, **ttls: int) -> RequestCache:
    return RequestCache(Cache(backend, ttls={"autocomplete": 60, **ttls}))


async def test_keys_carry_the_tenant_and_normalised_arguments():
    backend = MemoryBackend()
    tenant_1, tenant_2 = Service(request_cache(backend), 1), Service(request_cache(backend), 2)
    assert await tenant_1.search("Mi") == [Item(id=1, name="Mi")]
    assert await tenant_2.search("Mi") == [Item(id=2, name="Mi")]  # never tenant 1's entry
    assert await tenant_1.search("mI", limit=10) == [Item(id=1, name="Mi")]  # same key: a hit
    assert (tenant_1.calls, tenant_2.calls) == (1, 1)
    entries = [k for k in backend.stored_keys() if ":autocomplete:" in k]
    assert len(entries) == 2
    assert any(":Service.search:t1:" in k for k in entries)
    assert any(":Service.search:t2:" in k for k in entries)
    assert all(k.startswith(f"{KEY_PREFIX}:") for k in entries)


async def test_the_schema_version_follows_the_response_shape():
    class ItemV2(BaseModel):
        id: int
        name: str
        email: str

    v1 = schema_version(TypeAdapter(list[Item]))
    assert v1 == schema_version(TypeAdapter(list[Item]))
    assert v1 != schema_version(TypeAdapter(list[ItemV2]))
    assert v1 != schema_version(TypeAdapter(Item))
    assert v1 != schema_version(TypeAdapter(list[Item]), version=2)

    backend = MemoryBackend()
    await Service(request_cache(backend)).search("mi")
    [entry] = [k for k in backend.stored_keys() if ":autocomplete:" in k]
    assert entry.split(":")[2] == v1


async def test_no_cache_a_zero_ttl_or_a_pending_write_bypass_the_cache():
    backend = MemoryBackend()
    for service in (
        Service(None),
        Service(RequestCache(None)),
        Service(request_cache(backend, autocomplete=0)),
    ):
        await service.search("mi")
        await service.search("mi")
        assert service.calls == 2
    assert backend.stored_keys() == []

    writing = request_cache(backend)
    writing.invalidate("users:1")  # this request has written: it reads its own writes
    service = Service(writing)
    await service.search("mi")
    assert service.calls == 1
    assert not [k for k in backend.stored_keys() if ":autocomplete:" in k]


async def test_queued_invalidations_are_written_by_flush_only():
    backend = MemoryBackend()
    service = Service(request_cache(backend))
    await service.search("mi")
    writing = request_cache(backend)
    writing.invalidate("users:1", "user:9")
    assert writing.pending == {"users:1", "user:9"}
    await Service(request_cache(backend)).search("mi")
    assert service.calls == 1  # not yet: nothing committed
    await writing.flush()
    assert writing.pending == frozenset()
    reader = Service(request_cache(backend))
    await reader.search("mi")
    assert reader.calls == 1


async def test_a_principal_round_trips_through_the_cache():
    cache = make_cache()
    adapter = TypeAdapter(Principal | None)
    principal = Principal(user_id=3, company_id=4, role=Role.CHRO, email="c@x")

    async def compute() -> Principal | None:
        return principal

    async def none() -> Principal | None:
        return None

    assert await cache.get_or_compute("unit", adapter, "k:p", [], compute) == principal
    hit = await cache.get_or_compute("unit", adapter, "k:p", [], compute)
    assert hit == principal
    assert hit.is_chro_or_admin
    assert await cache.get_or_compute("unit", adapter, "k:none", [], none) is None
    assert await cache.get_or_compute("unit", adapter, "k:none", [], compute) is None  # cached


def test_create_cache_follows_the_settings():
    assert create_cache(make_settings(cache_enabled=False), None) is None
    cache = create_cache(make_settings(cache_ttl_principal=0, cache_ttl_companies=5), None)
    assert cache is not None
    assert isinstance(cache.backend, MemoryBackend)
    assert cache.ttl(CacheName.PRINCIPAL) == 0
    assert cache.ttl(CacheName.COMPANIES) == 5
    assert cache.ttl(CacheName.AUTOCOMPLETE) == 60


async def test_create_cache_uses_the_apps_redis_client():
    from redis.asyncio import Redis

    client = Redis.from_url("redis://127.0.0.1:1/0")
    cache = create_cache(make_settings(redis_url="redis://127.0.0.1:1/0"), client)
    await client.aclose()
    assert cache is not None
    assert isinstance(cache.backend, RedisBackend)
    assert cache.backend.redis is client


@pytest.mark.parametrize("ttl", [-1, 86_401])
def test_cache_ttls_are_bounded(ttl):
    with pytest.raises(ValueError, match="cache_ttl_dashboard"):
        make_settings(cache_ttl_dashboard=ttl)
