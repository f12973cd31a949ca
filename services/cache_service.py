"""The cache as services use it: the `@cached` decorator, the caches' names and scopes, and one
request's view (`RequestCache`). The machinery under it (backends, generations, single flight,
the cross-process lock, failing open) is `common/cache/`.

**Values.** A cached function returns a response schema (pydantic model, list of them, `Page`,
or a dataclass such as `Principal`); the entry stores that schema's JSON
(`TypeAdapter.dump_json`) and a hit is rebuilt with `validate_json`. No pickle, no ORM objects.

**Keys.** `etter:v1:<schema>:<cache>:<function>:<scope>:<arguments digest>`. `v1` is the
envelope format; `<schema>` is a hash of the return type's JSON schema (plus the decorator's
`version`), so a deploy that changes a response shape reads none of the old entries: old and new
processes in a rolling deploy each read only their own shape. `<scope>` is mandatory and says
whose data it is: `t<company id>` for tenant data (so one tenant's entry can never answer
another's request), `u<user id>` for one user's, `shared` only for data that is the same for
every caller (the master company catalogue).

**Invalidation.** Each entry depends on tags (`services/cache_invalidation.py`); a write queues
its tags on the request's `RequestCache`, written after the commit
(`common/cache/invalidation.py` explains the generations).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Concatenate, Final, Generic, ParamSpec, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter
from redis.asyncio import Redis

from common.cache.backends import CacheBackend, MemoryBackend, RedisBackend
from common.cache.cache import Cache
from common.cache.entries import GLOBAL_TAG, KEY_PREFIX
from settings.config import Settings

__all__ = [
    "GLOBAL_TAG",
    "KEY_PREFIX",
    "SHARED_SCOPE",
    "Cache",
    "CacheName",
    "RequestCache",
    "cached",
    "create_cache",
    "tenant_scope",
    "user_scope",
]

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

SHARED_SCOPE: Final = "shared"


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
    has committed (`common/transactions.py`); a rolled-back request invalidates nothing. Once a
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
    lock: bool = False,
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
    - `version`: bump when a value's meaning changes but its schema does not;
    - `lock`: the value is expensive to compute (the dashboard): when several processes miss it
      at once, one computes and the others wait for its result (three more round trips).

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
                lock=lock,
            )

        return wrapper

    return decorate
