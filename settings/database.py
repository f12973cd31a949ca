"""The async engine, its pool, and the session factory.

One `AsyncSession` per request (see `common/request_deps.py`); services only flush, and the
request's route class (`common/transactions.py`) commits once before the response is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, exc, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from settings.config import Settings


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
        # Every checkout pinged (3 round trips with asyncpg outside autocommit) only when asked
        # for with DB_POOL_PING_IDLE_SECONDS=0; otherwise `_ping_when_idle` below.
        "pool_pre_ping": settings.db_pool_pre_ping and not settings.db_pool_ping_idle_seconds,
        "connect_args": {
            "server_settings": server_settings,
            # PgBouncer in transaction mode cannot keep prepared statements across transactions.
            "prepared_statement_cache_size": 0 if settings.db_pgbouncer else 100,
            **_ssl(settings),
        },
    }


def _ssl(settings: Settings) -> dict[str, Any]:
    """`DB_SSLMODE`, unless DATABASE_URL names a mode itself. Explicit because asyncpg's
    default ("prefer") tries TLS first on every new connection, building an SSL context."""
    if {"sslmode", "ssl"} & set(make_url(settings.database_url).query):
        return {}
    return {"ssl": settings.db_sslmode.value}


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url, echo=settings.db_echo, **engine_options(settings)
    )
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    elif settings.db_pool_pre_ping and settings.db_pool_ping_idle_seconds:
        _ping_when_idle(engine, settings.db_pool_ping_idle_seconds)
    return engine


CHECKED_IN_AT = "checked_in_at"


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a connection on checkout only when it sat in the pool longer than `idle_seconds`.

    A connection used a moment ago is alive; one that idled may have been cut (a database
    restart, a firewall's idle timeout). A failed ping raises `DisconnectionError`, on which
    the pool discards the connection and checks out another (SQLAlchemy's documented
    pessimistic-disconnect recipe); a busy pool pays nothing per request.
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(CHECKED_IN_AT)
        if checked_in is None or time.monotonic() - checked_in <= idle_seconds:
            return  # new, or used a moment ago
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise exc.DisconnectionError("the pooled connection is gone") from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: response models read attributes after the commit.
    return async_sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


class ReadOnlyRequestError(RuntimeError):
    """A request that may only read (GET, HEAD, OPTIONS) tried to write: a bug, not a 4xx."""


class ReadOnlySession(Session):
    """The sync session behind a read-only request's `AsyncSession`: it refuses to flush."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(_session: Any, _context: Any, _instances: Any) -> None:
    raise ReadOnlyRequestError("a read-only request (GET, HEAD, OPTIONS) tried to write")


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests that only read, on the same pool: autocommit, so PostgreSQL sees
    each statement alone, with no BEGIN and COMMIT round trips around it (a page and its count
    may then read two snapshots a moment apart). They refuse to flush: a read that writes is
    a bug, and would otherwise commit statement by statement."""
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(
        bind=autocommit,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=ReadOnlySession,
    )


@dataclass(slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # PostgreSQL only; None on SQLite, where every request uses `sessionmaker`.
    read_sessionmaker: async_sessionmaker[AsyncSession] | None = None
    _default_sessionmaker: async_sessionmaker[AsyncSession] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        reader = None if settings.is_sqlite else create_read_sessionmaker(engine)
        return cls(engine, sessionmaker, reader, sessionmaker)

    def session(self, read_only: bool) -> AsyncSession:
        """A request's session. Read-only requests get an autocommit one while `sessionmaker`
        is still the app's own (a test that binds it to its own transaction gets its own)."""
        own = self.sessionmaker is self._default_sessionmaker
        if read_only and own and self.read_sessionmaker is not None:
            return self.read_sessionmaker()
        return self.sessionmaker()

    async def dispose(self) -> None:
        await self.engine.dispose()
