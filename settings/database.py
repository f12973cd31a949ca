"""The async engine, its pool, and the session factory.

One `AsyncSession` per request (see `common/request_deps.py`); services only flush, and the
request's route class (`common/transactions.py`) commits once before the response is sent.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from settings.config import Settings

log = structlog.get_logger("etter.database")


def engine_options(settings: Settings) -> dict[str, Any]:
    """Pool and driver options for the configured database."""
    if settings.is_sqlite:
        # One file, one writer: aiosqlite runs each connection in its own thread anyway.
        return {"connect_args": {"timeout": 30}}
    server_settings = {"application_name": "etter-api"}
    if settings.db_statement_timeout_ms and not settings.db_pgbouncer:
        # Cancels runaway queries on the server; the connection stays usable afterwards.
        # PgBouncer refuses it as a startup parameter: there, set it on the role instead
        # (ALTER ROLE etter SET statement_timeout = '15s').
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    connect_args: dict[str, Any] = {
        "server_settings": server_settings,
        # A new connection that cannot be opened in time fails like an exhausted pool would,
        # instead of asyncpg's 60 s default (a vanished host answers nothing at all).
        "timeout": settings.db_pool_timeout,
        "prepared_statement_cache_size": 100,
    }
    if settings.db_pgbouncer:
        connect_args.update(pgbouncer_connect_args())
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
        "connect_args": connect_args,
    }


def pgbouncer_connect_args() -> dict[str, Any]:
    """PgBouncer in transaction mode hands each transaction any server connection, so a
    statement prepared on one may be missing, or another's, on the next: no statement caches
    (SQLAlchemy's nor asyncpg's), and a unique name for each statement asyncpg still prepares."""
    return {
        "prepared_statement_cache_size": 0,
        "statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url, echo=settings.db_echo, **engine_options(settings)
    )
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: response models read attributes after the commit.
    return async_sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


def create_replica_engine(settings: Settings) -> AsyncEngine | None:
    """The engine for DATABASE_REPLICA_URL, or None. When the replica refuses a connection, the
    pool opens that connection on the primary instead (reads stay answered, and fresh), and
    drops it again after REPLICA_RETRY_SECONDS so the replica is tried anew."""
    if settings.database_replica_url is None or settings.is_sqlite:
        return None
    engine = create_async_engine(
        settings.database_replica_url, echo=settings.db_echo, **engine_options(settings)
    )
    primary_cargs, primary_cparams = engine.dialect.create_connect_args(
        make_url(settings.database_url)
    )
    primary_cparams.update(engine_options(settings)["connect_args"])
    retry_seconds = settings.replica_retry_seconds

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect_or_fall_back(
        dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        try:
            connection = dialect.connect(*cargs, **cparams)
            record.info.pop("fallback_until", None)
            return connection
        except (OSError, dialect.loaded_dbapi.Error) as error:
            log.warning("replica_unavailable", cause=type(error).__name__, fallback="primary")
            record.info["fallback_until"] = time.monotonic() + retry_seconds
            return dialect.connect(*primary_cargs, **primary_cparams)

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _retry_replica(_dbapi: Any, record: Any, _proxy: Any) -> None:
        until = record.info.get("fallback_until")
        if until is not None and time.monotonic() >= until:
            raise DisconnectionError("retry the replica")  # the pool reconnects at once

    return engine


@dataclass(slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # A streaming replica's sessions for read-only requests (common/replica.py picks).
    replica_engine: AsyncEngine | None = None
    replica_sessionmaker: async_sessionmaker[AsyncSession] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        replica = create_replica_engine(settings)
        return cls(
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            replica_engine=replica,
            replica_sessionmaker=create_sessionmaker(replica) if replica else None,
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.replica_engine is not None:
            await self.replica_engine.dispose()
