"""The async engine, its pool, and the session factory.

One `AsyncSession` per request (see `common/request_deps.py`); services only flush, and the
request's route class (`common/transactions.py`) commits once before the response is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from settings.config import Environment, Settings


def engine_options(settings: Settings) -> dict[str, Any]:
    """Pool and driver options for the configured database."""
    if settings.is_sqlite:
        # One file, one writer: aiosqlite runs each connection in its own thread anyway.
        return {"connect_args": {"timeout": 30}}
    server_settings = {"application_name": "etter-api"}
    if settings.db_statement_timeout_ms:
        # Cancels runaway queries on the server; the connection stays usable afterwards.
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": settings.db_pool_pre_ping,
        "connect_args": {
            "server_settings": server_settings,
            # PgBouncer in transaction mode cannot keep prepared statements across transactions.
            "prepared_statement_cache_size": 0 if settings.db_pgbouncer else 100,
        },
    }


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        # Outside development a database error's message never carries the statement's
        # parameters (passwords hashes, personal data) into logs or error reports.
        hide_parameters=settings.environment is not Environment.DEVELOPMENT,
        **engine_options(settings),
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


@dataclass(slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        return cls(engine=engine, sessionmaker=create_sessionmaker(engine))

    async def dispose(self) -> None:
        await self.engine.dispose()
