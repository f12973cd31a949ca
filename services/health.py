"""Readiness: can this process reach what it needs to serve requests?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    database: bool
    redis: bool | None  # None: the embedded default keeps its state in memory

    @property
    def ready(self) -> bool:
        return self.database and self.redis is not False


async def _database_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure at all means "not ready"; the reason goes to the log
        return False


async def _redis_ok(redis: Redis) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return bool(await redis.ping())
    except (RedisError, OSError, TimeoutError):
        return False


async def check_readiness(engine: AsyncEngine, redis: Redis | None) -> Readiness:
    if redis is None:
        return Readiness(database=await _database_ok(engine), redis=None)
    database, redis_ok = await asyncio.gather(_database_ok(engine), _redis_ok(redis))
    return Readiness(database=database, redis=redis_ok)
