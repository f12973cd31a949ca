"""A best-effort cache for service results: Redis when `REDIS_URL` is set, process memory
otherwise, one interface and one behaviour for both.

Why not cashews: its tags need templates registered up front, its default serialiser is pickle
and its HTTP helpers are `BaseHTTPMiddleware`; what Etter needs (schema JSON, generation tags,
a stampede lock, fail-open with metrics) is this one small module over `redis.asyncio`.

**Values.** A cached function returns a response schema (pydantic model, list of them, `Page`,
or a dataclass such as `Principal`); the entry stores that schema's JSON
(`TypeAdapter.dump_json`) and a hit is rebuilt with `validate_json`. No pickle, no ORM objects.

**Keys.** `etter:v1:<schema>:<cache>:<function>:<scope>:<arguments digest>`. `v1` is this
module's envelope format; `<schema>` is a hash of the return type's JSON schema (plus the
decorator's `version`), so a deploy that changes a response shape reads none of the old
entries: old and new processes in a rolling deploy each read only their own shape. `<scope>` is
mandatory and says whose data it is: `t<company id>` for tenant data (so one tenant's entry can
never answer another's request), `u<user id>` for one user's, `shared` only for data that is
the same for every caller (the master company catalogue).

**Invalidation: a generation per tag.** Each entry depends on tags (`company:7`, `users:7`,
`user:42`, and the global `*`; see `services/cache_invalidation.py`). Every tag has a
generation key in Redis holding a random token; invalidating a tag writes a new token (one SET
per tag, O(1) whatever the number of entries, visible to every process at once). An entry
stores the generations of its tags as read *before* its value was computed, and a read fetches
the entry and the current generations in one MGET: if any differs, the entry is stale and is a
miss. Compared with Redis sets of keys per tag, nothing has to be enumerated or deleted, a
crash between "store" and "add to tag set" cannot leave an entry that no invalidation reaches,
and a write racing a computation is safe: generations are read before the database is, and
invalidation runs after the commit, so a value computed from pre-commit data always carries a
generation older than the one the commit's invalidation wrote. Generations are random tokens,
not counters, and a tag without one (never invalidated, or its key expired or was evicted) is
given a fresh one before anything is stored: an entry only ever records tokens that never
repeat, so a lost generation key makes its entries misses, never current again.

**Stampede.** Concurrent misses of one key (at the same generations) in one process share one
computation (single flight); across processes a short Redis lock (`SET NX PX`) lets one
compute while the others poll for its result, for at most `CACHE_LOCK_TIMEOUT_MS`, after
which they compute themselves rather than fail.

**Fail open.** Any backend error is a miss: counted (`etter_cache_errors_total`), logged once
per outage (`cache_unavailable`, then `cache_recovered`), and the backend is left alone for
`CACHE_RETRY_SECONDS` before it is tried again. Invalidations that could not be written are
kept and written first when the backend answers again (all of them, via the global tag, if too
many piled up), so an outage leaves no entry stale after it (should the process end before
Redis returns, the entries' TTL is the bound).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import secrets
import time
import typing
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Concatenate, Final, Generic, ParamSpec, Protocol, TypeVar

import msgpack
import orjson
import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.metrics import CACHE_ERRORS, CACHE_HITS, CACHE_MISSES, REDIS_ERRORS
from settings.config import Settings

log = structlog.get_logger("etter.cache")

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

KEY_PREFIX: Final = "etter:v1"
GLOBAL_TAG: Final = "*"  # every entry depends on it: invalidating it drops everything
SHARED_SCOPE: Final = "shared"
# A generation key lives a week after it was last written: a bound on memory, not on safety
# (a lost generation key only turns its entries into misses; see the module docstring).
GENERATION_TTL_MS: Final = 7 * 24 * 3600 * 1000
# Invalidations kept while the backend is down; beyond this, everything is invalidated instead.
MAX_LOST_TAGS: Final = 10_000
BACKEND_ERRORS: Final = (RedisError, OSError, TimeoutError)
INVALIDATION: Final = "invalidation"  # the `cache` label of errors that belong to no one cache


class CacheName(StrEnum):
    """The caches, each with its TTL setting `CACHE_TTL_<NAME>` and its metric label."""

    COMPANIES = "companies"
    AUTOCOMPLETE = "autocomplete"
    PRINCIPAL = "principal"
    WORKFLOWS = "workflows"
    SIMULATIONS = "simulations"
    DASHBOARD = "dashboard"


def tenant_scope(company_id: int) -> str:
    return f"t{company_id}"


def user_scope(user_id: int) -> str:
    return f"u{user_id}"


def tag_key(tag: str) -> str:
    return f"{KEY_PREFIX}:tag:{tag}"


def new_generation() -> bytes:
    return secrets.token_hex(8).encode()


# --- backends ---------------------------------------------------------------------------------


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


# --- the cache --------------------------------------------------------------------------------


class _Unavailable:
    """The backend could not be used: a miss, and nothing is stored."""


UNAVAILABLE: Final = _Unavailable()
_MISSING: Final = object()


def _pack(generations: list[bytes], payload: bytes) -> bytes:
    return msgpack.packb([generations, payload], use_bin_type=True)


def _unpack(
    raw: bytes | None, generations: Sequence[bytes | None], adapter: TypeAdapter[Any]
) -> Any:
    """The entry's value if it is current (its generations are `generations`), else _MISSING."""
    if raw is None or None in generations:
        return _MISSING
    try:
        stored, payload = msgpack.unpackb(raw, raw=False)
        if stored != generations:
            return _MISSING
        return adapter.validate_json(payload)
    except (ValueError, TypeError, msgpack.UnpackException, ValidationError):
        return _MISSING  # another format or shape: recomputed and overwritten


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
        self.lock_timeout_ms = lock_timeout_ms
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._healthy = True
        self._retry_at = 0.0
        self._lost_tags: set[str] = set()
        self._lost_all = False
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def ttl(self, name: str) -> int:
        """Seconds entries of cache `name` live; 0 means that cache is off."""
        return self.ttls.get(name, 0)

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- reading -------------------------------------------------------------------------------

    async def get_or_compute(
        self,
        name: str,
        adapter: TypeAdapter[T],
        key: str,
        tags: Iterable[str],
        compute: Callable[[], Awaitable[T]],
    ) -> T:
        """The cached value of `key`, or `compute()`'s, stored for the next caller."""
        tag_keys = [tag_key(tag) for tag in (GLOBAL_TAG, *sorted(set(tags) - {GLOBAL_TAG}))]
        found = await self._call(name, "get", self.backend.get_many, [*tag_keys, key])
        if isinstance(found, _Unavailable):
            return await self._uncached(key, name, compute)
        value = _unpack(found[-1], found[:-1], adapter)
        if value is not _MISSING:
            CACHE_HITS.labels(name).inc()
            return value
        generations = await self._generations(name, tag_keys, found[:-1])
        if generations is None:
            return await self._uncached(key, name, compute)
        flight = f"{key}|{b','.join(generations).decode()}"
        return await self._single_flight(
            flight,
            name,
            lambda: self._fill(name, adapter, key, tag_keys, generations, compute),
        )

    async def _uncached(self, key: str, name: str, compute: Callable[[], Awaitable[T]]) -> T:
        """No generations to vouch for a value: compute (once per process), store nothing."""
        return await self._single_flight(f"{key}|-", name, lambda: self._compute(name, compute))

    async def _generations(
        self, name: str, tag_keys: list[str], current: list[bytes | None]
    ) -> list[bytes] | None:
        """The tags' generations, giving a fresh one to each tag that has none (never
        invalidated yet, or its key expired or was evicted). An entry thus only ever records
        real, never-repeating tokens: a generation key that disappears can never make an old
        entry current again. None when the backend is unavailable."""
        missing = {
            tag: new_generation()
            for tag, generation in zip(tag_keys, current, strict=True)
            if generation is None
        }
        if not missing:
            return [generation for generation in current if generation is not None]
        ensured = await self._call(name, "init", self.backend.ensure, missing, GENERATION_TTL_MS)
        if isinstance(ensured, _Unavailable):
            return None
        created = dict(zip(missing, ensured, strict=True))
        return [
            generation if generation is not None else created[tag]
            for tag, generation in zip(tag_keys, current, strict=True)
        ]

    async def _single_flight(self, flight: str, name: str, run: Callable[[], Awaitable[T]]) -> T:
        """Concurrent callers of one flight in this process share the first caller's result."""
        leader = self._inflight.get(flight)
        if leader is not None:
            await asyncio.wait((leader,))
            if not leader.cancelled():
                CACHE_HITS.labels(name).inc()
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

    async def _compute(self, name: str, compute: Callable[[], Awaitable[T]]) -> T:
        CACHE_MISSES.labels(name).inc()
        return await compute()

    async def _fill(
        self,
        name: str,
        adapter: TypeAdapter[T],
        key: str,
        tag_keys: list[str],
        generations: list[bytes],
        compute: Callable[[], Awaitable[T]],
    ) -> T:
        lock_key, token = f"{key}:lock", new_generation()
        locked = await self._call(
            name, "lock", self.backend.add, lock_key, token, self.lock_timeout_ms
        )
        try:
            if locked is False:  # another process is computing this value: wait for it
                value = await self._wait_for_other(name, adapter, key, tag_keys, lock_key)
                if value is not _MISSING:
                    CACHE_HITS.labels(name).inc()
                    return value
            elif locked is True:
                # Another process may have stored it and let go of the lock since our read.
                found = await self._call(name, "get", self.backend.get_many, [*tag_keys, key])
                if not isinstance(found, _Unavailable) and None not in found[:-1]:
                    value = _unpack(found[-1], found[:-1], adapter)
                    if value is not _MISSING:
                        CACHE_HITS.labels(name).inc()
                        return value
                    # Invalidated since our read: the newer generations go with our value.
                    generations = [g for g in found[:-1] if g is not None]
            value = await self._compute(name, compute)
            entry = _pack(generations, adapter.dump_json(value))
            await self._call(name, "set", self.backend.set, key, entry, self.ttl(name) * 1000)
            return value
        finally:
            if locked is True:
                await self._call(name, "unlock", self.backend.delete_if_equal, lock_key, token)

    async def _wait_for_other(
        self, name: str, adapter: TypeAdapter[T], key: str, tag_keys: list[str], lock_key: str
    ) -> Any:
        """The other process's value once stored, or _MISSING if it gave up or took too long."""
        deadline = self._clock() + self.lock_timeout_ms / 1000
        delay = 0.005
        while self._clock() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            found = await self._call(name, "get", self.backend.get_many, [*tag_keys, key, lock_key])
            if isinstance(found, _Unavailable):
                return _MISSING
            value = _unpack(found[-2], found[:-2], adapter)
            if value is not _MISSING or found[-1] is None:
                return value
        return _MISSING

    # -- invalidation --------------------------------------------------------------------------

    async def invalidate(self, tags: Iterable[str]) -> None:
        """Give each tag a new generation: every entry that depends on one is stale, everywhere."""
        tags = set(tags)
        if not tags:
            return
        result = await self._call(INVALIDATION, "invalidate", self._bump, tags)
        if isinstance(result, _Unavailable):
            self._remember_lost(tags)

    async def invalidate_all(self) -> None:
        await self.invalidate([GLOBAL_TAG])

    async def _bump(self, tags: set[str]) -> None:
        generation = new_generation()
        await self.backend.set_many({tag_key(tag): generation for tag in tags}, GENERATION_TTL_MS)

    def _remember_lost(self, tags: set[str]) -> None:
        self._lost_tags |= tags
        if len(self._lost_tags) > MAX_LOST_TAGS:
            self._lost_tags.clear()
            self._lost_all = True

    # -- failing open --------------------------------------------------------------------------

    async def _call(
        self, name: str, operation: str, function: Callable[..., Awaitable[T]], *args: Any
    ) -> T | _Unavailable:
        """`function(*args)` on the backend, or UNAVAILABLE (counted, logged once) if it fails."""
        if not await self._available():
            return UNAVAILABLE
        try:
            result = await function(*args)
        except BACKEND_ERRORS as error:
            self._failed(name, operation, error)
            return UNAVAILABLE
        self._recovered()
        return result

    async def _available(self) -> bool:
        if not self._healthy and self._clock() < self._retry_at:
            return False
        if self._lost_tags or self._lost_all:
            # Before anything is read again, write the invalidations the outage swallowed.
            lost = {GLOBAL_TAG} if self._lost_all else set(self._lost_tags)
            try:
                await self._bump(lost)
            except BACKEND_ERRORS as error:
                self._failed(INVALIDATION, "replay", error)
                return False
            self._lost_tags -= lost
            self._lost_all = False
        return True

    def _failed(self, name: str, operation: str, error: BaseException) -> None:
        CACHE_ERRORS.labels(name, operation).inc()
        REDIS_ERRORS.labels("cache").inc()
        if self._healthy:
            log.warning(
                "cache_unavailable",
                backend=self.backend.name,
                cache=name,
                operation=operation,
                error=f"{type(error).__name__}: {error}",
                retry_seconds=self.retry_seconds,
            )
        self._healthy = False
        self._retry_at = self._clock() + self.retry_seconds

    def _recovered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.info("cache_recovered", backend=self.backend.name)


def create_cache(settings: Settings, redis: Redis | None) -> Cache | None:
    """The app's cache: on `redis`, in memory without it, None when `CACHE_ENABLED` is off."""
    if not settings.cache_enabled:
        return None
    backend: CacheBackend = (
        RedisBackend(redis)
        if redis is not None
        else MemoryBackend(settings.cache_memory_max_entries)
    )
    return Cache(
        backend,
        ttls={name: getattr(settings, f"cache_ttl_{name.value}") for name in CacheName},
        lock_timeout_ms=settings.cache_lock_timeout_ms,
        retry_seconds=settings.cache_retry_seconds,
    )


# --- one request's view -----------------------------------------------------------------------


class RequestCache:
    """What one request's services use: the shared `Cache` (None when caching is off) and the
    invalidations the request's writes queued.

    The queue is written by `flush()`, which the request's route runs only after its transaction
    has committed (`common/routing.py`); a rolled-back request invalidates nothing. Once a
    request has written, its own reads bypass the cache: they must see the request's uncommitted
    writes, and a value computed from them must never be stored for others.
    """

    def __init__(self, cache: Cache | None) -> None:
        self.cache = cache
        self._tags: set[str] = set()

    def invalidate(self, *tags: str) -> None:
        self._tags.update(tags)

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._tags)

    def serves(self, name: str) -> bool:
        return self.cache is not None and not self._tags and self.cache.ttl(name) > 0

    async def flush(self) -> None:
        tags, self._tags = self._tags, set()
        if self.cache is not None and tags:
            await self.cache.invalidate(tags)


# --- the decorator ----------------------------------------------------------------------------


@dataclass
class _Spec(Generic[T]):
    adapter: TypeAdapter[T]
    schema_version: str


def _key_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} cannot be part of a cache key")


def arguments_digest(parts: Any) -> str:
    raw = orjson.dumps(
        parts, default=_key_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def schema_version(adapter: TypeAdapter[Any], version: int = 1) -> str:
    schema = orjson.dumps(adapter.json_schema(mode="serialization"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(schema + f"|{version}".encode()).hexdigest()[:12]


def cached(
    name: CacheName,
    *,
    scope: str | Callable[..., str],
    tags: Callable[..., Iterable[str]] | None = None,
    key: Callable[..., Any] | None = None,
    version: int = 1,
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[T]]], Callable[Concatenate[S, P], Awaitable[T]]
]:
    """Cache a service method's result (a response schema) in cache `name`.

    The builders are called with the method's arguments by name (`self` included), e.g.
    `scope=lambda self, **_: tenant_scope(self.principal.company_id)`:
    - `scope`: whose data (`tenant_scope`, `user_scope` or `SHARED_SCOPE`); required, so a key
      can never leave the tenant out by accident;
    - `tags`: what the value depends on (`services/cache_invalidation.Tags`);
    - `key`: the parts that tell values apart (default: every argument but `self`); normalise
      here what the query normalises (case, caps) for a better hit rate;
    - `version`: bump when a value's meaning changes but its schema does not.

    The method's instance must have `cache: RequestCache | None`; without one (scripts, tests of
    the service alone) the method simply runs.
    """

    def decorate(
        function: Callable[Concatenate[S, P], Awaitable[T]],
    ) -> Callable[Concatenate[S, P], Awaitable[T]]:
        signature = inspect.signature(function)
        spec: list[_Spec[T]] = []  # resolved on first use: annotations may name later classes

        def resolve() -> _Spec[T]:
            if not spec:
                returns = typing.get_type_hints(function).get("return")
                if returns is None:
                    raise TypeError(f"@cached {function.__qualname__} needs a return annotation")
                adapter: TypeAdapter[T] = TypeAdapter(returns)
                spec.append(_Spec(adapter, schema_version(adapter, version)))
            return spec[0]

        @functools.wraps(function)
        async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
            request_cache: RequestCache | None = getattr(self, "cache", None)
            if request_cache is None or not request_cache.serves(name):
                return await function(self, *args, **kwargs)
            cache = request_cache.cache
            assert cache is not None  # serves() says so
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            resolved = resolve()
            where = scope if isinstance(scope, str) else scope(**arguments)
            parts = key(**arguments) if key else {k: v for k, v in arguments.items() if k != "self"}
            entry_key = ":".join(
                (
                    KEY_PREFIX,
                    resolved.schema_version,
                    name.value,
                    function.__qualname__,
                    where,
                    arguments_digest(parts),
                )
            )
            return await cache.get_or_compute(
                name.value,
                resolved.adapter,
                entry_key,
                tags(**arguments) if tags else (),
                lambda: function(self, *args, **kwargs),
            )

        return wrapper

    return decorate
