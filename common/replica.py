"""Which database a request's session uses: read-only requests go to the streaming replica
(DATABASE_REPLICA_URL) unless their caller wrote recently (read-your-writes).

A caller is its credentials (the `Authorization` header, hashed): after a request of theirs
commits a write, their reads go to the primary for REPLICA_STICKY_SECONDS, long enough for the
replica to replay it. The mark lives in Redis so that every instance honours it; without Redis,
or when Redis does not answer, reads go to the primary (correct, merely not offloaded).
"""

from __future__ import annotations

import hashlib

import structlog
from fastapi import Request
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from common.transactions import after_commit

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
STICKY_KEY_PREFIX = "etter:primary-after-write"

log = structlog.get_logger("etter.replica")


def _sticky_key(request: Request) -> str | None:
    credentials = request.headers.get("authorization")
    if not credentials:
        return None
    return f"{STICKY_KEY_PREFIX}:{hashlib.sha256(credentials.encode()).hexdigest()[:32]}"


async def _wrote_recently(request: Request, key: str | None) -> bool:
    redis = request.app.state.redis
    if redis is None:
        return True
    if key is None:
        return False
    try:
        return bool(await redis.exists(key))
    except (RedisError, OSError) as error:
        log.warning("replica_sticky_unknown", cause=type(error).__name__)
        return True


def _remember_write(request: Request, key: str) -> None:
    redis = request.app.state.redis
    if redis is None:
        return
    milliseconds = int(request.app.state.settings.replica_sticky_seconds * 1000)

    async def mark() -> None:
        # A failure is logged by after_commit's runner; the write itself has committed.
        await redis.set(key, 1, px=max(1, milliseconds))

    after_commit(request, mark)


async def replica_session(request: Request) -> AsyncSession | None:
    """A replica session for a read whose caller did not just write; None: use the primary.
    A write's caller is remembered once its transaction commits."""
    database = request.app.state.database
    if database.replica_sessionmaker is None:
        return None
    key = _sticky_key(request)
    if request.method not in READ_ONLY_METHODS:
        if key is not None:
            _remember_write(request, key)
        return None
    if await _wrote_recently(request, key):
        return None
    return database.replica_sessionmaker()
