"""The Redis client, with explicit short timeouts.

redis-py's defaults (no socket timeout at all in some versions) can stall a request for many
seconds when Redis is slow or gone; Etter would rather treat Redis as briefly unavailable.
"""

from __future__ import annotations

from redis.asyncio import Redis

from settings.config import Settings


def create_redis(settings: Settings) -> Redis | None:
    """A client for `REDIS_URL`, or None for the embedded default (in-process state)."""
    if not settings.redis_url:
        return None
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        max_connections=settings.redis_max_connections,
        health_check_interval=30,
        retry_on_timeout=False,
        decode_responses=False,
    )
