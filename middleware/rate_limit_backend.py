"""Rate-limit policies and counters, on the `limits` library's asyncio API.

Counters live in Redis when `REDIS_URL` is set, so every process and machine shares them, and
in process memory for the embedded default. If Redis fails, the limiter fails open to an
in-process limiter: the request is still limited (per process), the outage is logged once and
every decision taken in-process is counted; Redis is tried again after
`RATE_LIMIT_REDIS_RETRY_SECONDS`, so a dead Redis costs one failed call per interval rather
than a timeout per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import STRATEGIES, RateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from common.circuit_breaker import CircuitBreaker
from common.metrics import RATE_LIMIT_FALLBACK, REDIS_ERRORS
from settings.config import Settings
from settings.redis import blocking_pool

REDIS_KEY_PREFIX = "etter:ratelimit"
# Whatever a Redis call can fail with; anything else is a bug and is not swallowed.
STORAGE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)

log = structlog.get_logger("etter.ratelimit")


@dataclass(frozen=True, slots=True)
class Policy:
    """One named limit, e.g. `read` = 600 per 60 s."""

    name: str
    item: RateLimitItem
    # Derived once from `item`: read on every request (headers, reset times).
    quota: int = field(init=False)
    window: int = field(init=False)
    # The `RateLimit-Policy` entry, constant for the policy: `"read";q=600;w=60`.
    header: bytes = field(init=False)

    def __post_init__(self) -> None:
        quota, window = self.item.amount, self.item.get_expiry()
        object.__setattr__(self, "quota", quota)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "header", f'"{self.name}";q={quota};w={window}'.encode())

    @classmethod
    def parse(cls, name: str, limit: str) -> Policy:
        return cls(name=name, item=parse(limit))


@dataclass(frozen=True, slots=True)
class Policies:
    login: Policy
    login_account: Policy
    write: Policy
    read: Policy
    anonymous: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            login=Policy.parse("login", settings.rate_limit_login),
            login_account=Policy.parse("login-account", settings.rate_limit_login_account),
            write=Policy.parse("write", settings.rate_limit_write),
            read=Policy.parse("read", settings.rate_limit_read),
            anonymous=Policy.parse("anonymous", settings.rate_limit_anonymous),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    policy: Policy
    allowed: bool
    remaining: int
    reset_in: int  # seconds until quota is available again

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_in)


@dataclass(slots=True)
class _Lease:
    """Hits this process took from Redis ahead of need, for one policy and subject."""

    units: int  # prepaid hits not used yet
    remaining: int  # the shared quota left when they were taken
    reset_at: float  # wall-clock time the shared window frees quota
    taken_at: float  # monotonic
    size: int  # how many were taken
    refused: bool = False  # the store said no: answer no until reset_at (within the ttl)


class RateLimitBackend:
    """Takes one hit against a policy for a subject (`user:42`, `ip:203.0.113.9`, ...).

    A Redis round trip through redis-py costs more CPU than a trivial request (and even the
    `limits` memory store costs a good part of one), so a busy subject's hits are leased from
    the store a few at a time: the lease doubles (from 1, up to
    `lease_max` and 2% of the quota) while each one is used up within `lease_ttl`, and falls
    back to 1 as soon as the subject slows down. Quiet subjects and small quotas (login,
    anonymous, tests) are therefore counted exactly; a hot subject is counted ahead by at
    most one lease per process. Unused leased hits lapse after `lease_ttl`. Concurrent
    requests of one subject share a single refill, and a refusal is remembered until its
    reset (within `lease_ttl`), so a client hammering past its limit does not hammer Redis.
    """

    MAX_LEASES = 10_000

    def __init__(
        self,
        strategy: str,
        redis_storage: Storage | None,
        retry_seconds: float,
        redis_pool: ConnectionPool | None = None,
        *,
        lease_max: int = 1,
        lease_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limiter_class = STRATEGIES[strategy]
        self.local: RateLimiter = limiter_class(MemoryStorage())
        self.shared: RateLimiter | None = (
            limiter_class(redis_storage) if redis_storage is not None else None
        )
        self.retry_seconds = retry_seconds
        self.lease_max = lease_max
        self.lease_ttl = lease_ttl
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._refills: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._redis_pool = redis_pool
        self.breaker = CircuitBreaker(retry_seconds, clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitBackend:
        if not settings.redis_url:
            return cls(
                settings.rate_limit_strategy,
                None,
                settings.rate_limit_redis_retry_seconds,
                lease_max=settings.rate_limit_lease_max,
            )
        # Own pool, no retries: a rate-limit check must fail fast and fall back, not wait.
        pool = blocking_pool(settings, retry=Retry(NoBackoff(), 0))
        storage = RedisStorage(
            "async+" + settings.redis_url,
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=REDIS_KEY_PREFIX,
            connection_pool=pool,
        )
        return cls(
            settings.rate_limit_strategy,
            storage,
            settings.rate_limit_redis_retry_seconds,
            pool,
            lease_max=settings.rate_limit_lease_max,
        )

    @property
    def degraded(self) -> bool:
        return not self.breaker.closed

    async def hit(self, policy: Policy, subject: str) -> Verdict:
        if self.shared is None:  # the embedded default: memory is the store
            return await self._leased_hit(self.local, policy, subject)
        if self.breaker.allows():
            try:
                verdict = await self._leased_hit(self.shared, policy, subject)
            except STORAGE_ERRORS as exc:
                self._shared_failed(exc)
            else:
                if self.breaker.succeeded():
                    log.warning("rate_limit_storage_recovered")
                return verdict
        RATE_LIMIT_FALLBACK.inc()
        return await self._hit(self.local, policy, subject)

    def _shared_failed(self, exc: BaseException) -> None:
        REDIS_ERRORS.labels("rate_limit").inc()
        self._leases.clear()
        if self.breaker.failed():
            # Once per outage: a log line per request would bury everything else.
            log.error(
                "rate_limit_storage_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                fallback="in-process",
                retry_seconds=self.retry_seconds,
            )

    async def _leased_hit(self, limiter: RateLimiter, policy: Policy, subject: str) -> Verdict:
        key = (policy.name, subject)
        while True:
            verdict = self._from_lease(key, policy)
            if verdict is not None:
                return verdict
            refill = self._refills.get(key)
            if refill is None:
                break
            # Another request of this subject is asking the store already: share its answer
            # rather than pile up round trips (concurrent requests would all find the lease
            # empty at once).
            await refill
        self._refills[key] = refill = asyncio.get_running_loop().create_future()
        try:
            return await self._refill(limiter, policy, subject, key)
        finally:
            del self._refills[key]
            refill.set_result(None)

    def _from_lease(self, key: tuple[str, str], policy: Policy) -> Verdict | None:
        lease = self._leases.get(key)
        if lease is None or time.monotonic() - lease.taken_at >= self.lease_ttl:
            return None
        now = time.time()
        if lease.refused:
            if now < lease.reset_at:  # told to retry later: no need to ask again
                return Verdict(policy, False, 0, _reset_in(policy, lease.reset_at, 0, now))
            return None
        if lease.units <= 0:
            return None
        lease.units -= 1
        remaining = lease.remaining + lease.units
        return Verdict(policy, True, remaining, _reset_in(policy, lease.reset_at, remaining, now))

    async def _refill(
        self, limiter: RateLimiter, policy: Policy, subject: str, key: tuple[str, str]
    ) -> Verdict:
        now = time.monotonic()
        lease = self._leases.get(key)
        size = 1
        if lease is not None and not lease.refused and now - lease.taken_at < self.lease_ttl:
            # The last lease ran out within its time: a busy subject, lease more.
            size = min(lease.size * 2, self.lease_max, max(1, policy.quota // 50))
        allowed = await limiter.hit(policy.item, policy.name, subject, cost=size)
        if not allowed and size > 1:
            size = 1  # not enough quota left for a lease: the last few hits one by one
            allowed = await limiter.hit(policy.item, policy.name, subject)
        verdict = await self._verdict(limiter, policy, subject, allowed)
        if len(self._leases) >= self.MAX_LEASES and key not in self._leases:
            del self._leases[next(iter(self._leases))]
        reset_at = time.time() + verdict.reset_in
        if allowed:
            self._leases[key] = _Lease(size - 1, verdict.remaining, reset_at, now, size)
            return Verdict(policy, True, verdict.remaining + size - 1, verdict.reset_in)
        self._leases[key] = _Lease(0, 0, reset_at, now, 1, refused=True)
        return verdict

    async def _hit(self, limiter: RateLimiter, policy: Policy, subject: str) -> Verdict:
        allowed = await limiter.hit(policy.item, policy.name, subject)
        return await self._verdict(limiter, policy, subject, allowed)

    @staticmethod
    async def _verdict(
        limiter: RateLimiter, policy: Policy, subject: str, allowed: bool
    ) -> Verdict:
        stats = await limiter.get_window_stats(policy.item, policy.name, subject)
        remaining = max(0, stats.remaining)
        return Verdict(policy, allowed, remaining, _reset_in(policy, stats.reset_time, remaining))

    async def aclose(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.aclose()


def _reset_in(policy: Policy, reset_at: float, remaining: int, now: float | None = None) -> int:
    now = time.time() if now is None else now
    reset_in = min(policy.window, max(0, math.ceil(reset_at - now)))
    if reset_in == 0 and remaining < policy.quota:
        # The sliding-window stats compute the reset modulo the window, so a hit made at the
        # very start of a window reads 0 where a whole window is meant.
        reset_in = policy.window
    return reset_in
