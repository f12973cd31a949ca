"""Readiness: can this process reach what it needs to serve requests?

Each check returns why it failed (the error's type and message); `ReadinessLog` logs a
dependency going down (with that reason) or coming back once per change of state, not on
every probe, and keeps the `etter_dependency_up` gauge.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.metrics import DEPENDENCY_UP, REDIS_ERRORS

CHECK_TIMEOUT_SECONDS = 2.0

log = structlog.get_logger("etter.health")


@dataclass(frozen=True, slots=True)
class Readiness:
    database: bool
    redis: bool | None  # None: the embedded default keeps its state in memory
    errors: dict[str, str] = field(default_factory=dict)  # dependency -> why it failed

    @property
    def ready(self) -> bool:
        return self.database and self.redis is not False


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


async def _database_error(engine: AsyncEngine) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None
    except Exception as error:  # any failure at all means "not ready"; the reason is logged
        return _describe(error)


async def _redis_error(redis: Redis) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            if await redis.ping():
                return None
            return "PING was not answered with PONG"
    except Exception as error:
        REDIS_ERRORS.labels("health").inc()
        return _describe(error)


async def check_readiness(engine: AsyncEngine, redis: Redis | None) -> Readiness:
    if redis is None:
        database_error = await _database_error(engine)
        errors = {"database": database_error} if database_error else {}
        return Readiness(database=database_error is None, redis=None, errors=errors)
    database_error, redis_error = await asyncio.gather(_database_error(engine), _redis_error(redis))
    errors = {
        name: error
        for name, error in (("database", database_error), ("redis", redis_error))
        if error is not None
    }
    return Readiness(database=database_error is None, redis=redis_error is None, errors=errors)


class ReadinessLog:
    """Logs readiness changes, once each, per process (one per app)."""

    def __init__(self) -> None:
        self._up: dict[str, bool] = {}

    def observe(self, result: Readiness) -> None:
        states = {"database": result.database}
        if result.redis is not None:
            states["redis"] = result.redis
        for dependency, up in states.items():
            DEPENDENCY_UP.labels(dependency).set(1 if up else 0)
            before = self._up.get(dependency)
            self._up[dependency] = up
            if before is up or (before is None and up):
                continue  # unchanged, or up from the first probe on: nothing to say
            if up:
                log.info("readiness_recovered", dependency=dependency)
            else:
                log.error(
                    "readiness_failed",
                    dependency=dependency,
                    error=result.errors.get(dependency, "unknown"),
                )
