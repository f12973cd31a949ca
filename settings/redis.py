"""The Redis client, with explicit short timeouts.

redis-py's defaults (no socket timeout at all in some versions) can stall a request for many
seconds when Redis is slow or gone; Etter would rather treat Redis as briefly unavailable.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from settings.config import Settings


def create_redis(settings: Settings) -> Redis | None:
    """A client for `REDIS_URL`, or None for the embedded default (in-process state)."""
    if not settings.redis_url:
        return None
    return Redis(connection_pool=blocking_pool(settings))


def blocking_pool(settings: Settings, **options: object) -> BlockingConnectionPool:
    """At most REDIS_MAX_CONNECTIONS connections; a request that finds none free waits up to
    REDIS_POOL_TIMEOUT for one, then fails (a cache miss, the in-process rate limiter) rather
    than opening more (redis-py's default pool raises "Too many connections" at once)."""
    assert settings.redis_url is not None
    return BlockingConnectionPool.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
        health_check_interval=30,
        decode_responses=False,
        **options,
    )
