"""Count the SQL statements the app sends, to pin a request's cost and catch N+1 queries.

    with count_statements(app) as counter:
        await client.get(...)
    assert counter.count == 4, counter

Cached reads (the caller's principal, dashboards, ...) send fewer statements on a hit, so a
count that pins what an endpoint *computes* is taken on `uncached_app()`: another app instance
on the test's data with the cache switched off (CACHE_ENABLED=false).

A `before_cursor_execute` listener on the engine behind the app's sessions sees every statement
the database receives. Transaction control (BEGIN, COMMIT, SAVEPOINT and its RELEASE/ROLLBACK)
is left out of `count`: in tests the app's commit is a SAVEPOINT release inside the test's
transaction, which production never sends; `statements_with_transaction_control` keeps them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import Connection, Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from settings.config import Settings
from settings.server import create_app
from tests.conftest import isolated_sessionmaker

TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT)\b", re.IGNORECASE
)


@dataclass
class QueryCounter:
    statements_with_transaction_control: list[str] = field(default_factory=list)

    @property
    def statements(self) -> list[str]:
        return [
            s for s in self.statements_with_transaction_control if not TRANSACTION_CONTROL.match(s)
        ]

    @property
    def count(self) -> int:
        return len(self.statements)

    def __str__(self) -> str:
        return f"{self.count} statements:\n" + "\n---\n".join(self.statements)


def sync_engine_of(target: FastAPI | AsyncEngine | AsyncConnection | Engine | Connection) -> Engine:
    """The engine whose connections run the app's statements.

    For an app, the bind of its sessionmaker: in the PostgreSQL tests that is the test's outer
    connection (whose engine is the suite's), on SQLite the app's own engine.
    """
    if isinstance(target, FastAPI):
        target = target.state.database.sessionmaker.kw["bind"]
    if isinstance(target, AsyncEngine | AsyncConnection):
        return target.sync_engine
    if isinstance(target, Connection):
        return target.engine
    return target


@contextmanager
def count_statements(
    target: FastAPI | AsyncEngine | AsyncConnection | Engine | Connection,
) -> Iterator[QueryCounter]:
    """Count the statements sent through `target`'s engine while the block runs.

    Everything on that engine is counted, so keep the block to the request being measured
    (not test setup through the `db` fixture, which shares the connection).
    """
    engine = sync_engine_of(target)
    counter = QueryCounter()

    def record(
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        counter.statements_with_transaction_control.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", record)


@asynccontextmanager
async def uncached_app(
    settings: Settings, connection: AsyncConnection | None
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with the cache off, on the test's data (the `settings` and `connection`
    fixtures), and a client for it: every request computes, so its statement count is that of
    the work itself."""
    application = create_app(settings.model_copy(update={"cache_enabled": False}))
    async with LifespanManager(application):
        if connection is not None:
            application.state.database.sessionmaker = isolated_sessionmaker(connection)
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield application, client
