"""Rate-limit policies and counters, on the `limits` library's asyncio API.

Counters live in Redis when `REDIS_URL` is set, so every process and machine shares them, and
in process memory for the embedded default. If Redis fails, the limiter fails open to an
in-process limiter: the request is still limited (per process), the outage is logged once and
every decision taken in-process is counted; Redis is tried again after
`RATE_LIMIT_REDIS_RETRY_SECONDS`, so a dead Redis costs one failed call per interval rather
than a timeout per request.
"""

from __future__ import annotations

import hashlib
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
from common.exceptions import RateLimitedError
from common.metrics import RATE_LIMIT_FALLBACK, RATE_LIMITED, REDIS_ERRORS
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


class RateLimitBackend:
    """Takes one hit against a policy for a subject (`user:42`, `ip:203.0.113.9`, ...): one
    round trip to the store per request, counted exactly."""

    def __init__(
        self,
        strategy: str,
        redis_storage: Storage | None,
        retry_seconds: float,
        redis_pool: ConnectionPool | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limiter_class = STRATEGIES[strategy]
        self.local: RateLimiter = limiter_class(MemoryStorage())
        self.shared: RateLimiter | None = (
            limiter_class(redis_storage) if redis_storage is not None else None
        )
        self.retry_seconds = retry_seconds
        self._redis_pool = redis_pool
        self.breaker = CircuitBreaker(retry_seconds, clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitBackend:
        if not settings.redis_url:
            return cls(settings.rate_limit_strategy, None, settings.rate_limit_redis_retry_seconds)
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
            settings.rate_limit_strategy, storage, settings.rate_limit_redis_retry_seconds, pool
        )

    @property
    def degraded(self) -> bool:
        return not self.breaker.closed

    async def hit(self, policy: Policy, subject: str) -> Verdict:
        if self.shared is None:  # the embedded default: memory is the store
            return await self._hit(self.local, policy, subject)
        if self.breaker.allows():
            try:
                verdict = await self._hit(self.shared, policy, subject)
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
        if self.breaker.failed():
            # Once per outage: a log line per request would bury everything else.
            log.error(
                "rate_limit_storage_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                fallback="in-process",
                retry_seconds=self.retry_seconds,
            )

    async def _hit(self, limiter: RateLimiter, policy: Policy, subject: str) -> Verdict:
        allowed = await limiter.hit(policy.item, policy.name, subject)
        stats = await limiter.get_window_stats(policy.item, policy.name, subject)
        remaining = max(0, stats.remaining)
        return Verdict(policy, allowed, remaining, _reset_in(policy, stats.reset_time, remaining))

    async def aclose(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.aclose()


def _reset_in(policy: Policy, reset_at: float, remaining: int) -> int:
    reset_in = min(policy.window, max(0, math.ceil(reset_at - time.time())))
    if reset_in == 0 and remaining < policy.quota:
        # The sliding-window stats compute the reset modulo the window, so a hit made at the
        # very start of a window reads 0 where a whole window is meant.
        reset_in = policy.window
    return reset_in


def account_key(username: str) -> str:
    """The account as the login service matches it, hashed: no email address in Redis keys."""
    normalised = username.strip().lower().encode("utf-8", "replace")
    return "account:" + hashlib.sha256(normalised).hexdigest()[:32]


class LoginFailures:
    """The per-account limit on failed logins (the token route's dependency).

    Only failures count: past the account's quota, a wrong password is answered 429 instead
    of 401, so password guessing spread over many addresses stops being worth it, while the
    account's owner, who knows the password, still logs in (the per-address login limit of the
    middleware applies to everyone).
    """

    def __init__(self, backend: RateLimitBackend | None, policy: Policy) -> None:
        self.backend = backend  # None: rate limiting is switched off
        self.policy = policy

    async def failed(self, username: str) -> None:
        """Count a failed login against `username`'s account; raise 429 past its quota."""
        if self.backend is None:
            return
        verdict = await self.backend.hit(self.policy, account_key(username))
        if verdict.allowed:
            return
        RATE_LIMITED.labels(policy=self.policy.name).inc()
        log.info("rate_limited", policy=self.policy.name, retry_after=verdict.retry_after)
        raise RateLimitedError(
            verdict.retry_after,
            f"Too many failed logins for this account: the '{self.policy.name}' limit "
            f"({self.policy.quota} per {self.policy.window} s); "
            f"retry in {verdict.retry_after} s.",
        )
