"""Pool limits that fail fast, on a real engine (not the suite's shared test connection).

- With the pool exhausted, a request waits DB_POOL_TIMEOUT for a connection and is then
  answered 503 `application/problem+json` with `Retry-After`, never left waiting.
- DB_STATEMENT_TIMEOUT_MS makes PostgreSQL cancel a runaway query: the request gets a 503
  problem, and the connection goes back to the pool healthy (with a pool of one, the next
  request runs on the very same server backend).

The app's engine here talks to the migrated test database directly and only reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from api.routers import resource_router
from common.problems import PROBLEM_MEDIA_TYPE
from common.request_deps import SessionDep
from common.security import create_access_token
from settings.server import create_app
from tests.conftest import make_settings

# A token for a user id that does not exist: authenticating it takes one query (and then 401),
# so a request needs a pooled connection without any test data.
NO_SUCH_USER = 2_000_000_000


def _probe_router() -> Any:
    """Test-only routes: a runaway query, and which server backend serves the request."""
    router = resource_router("/_probe", "probe")

    @router.get("/sleep")
    async def sleep(session: SessionDep) -> dict[str, str]:
        await session.execute(text("SELECT pg_sleep(5)"))
        return {"slept": "yes"}

    @router.get("/backend")
    async def backend(session: SessionDep) -> dict[str, Any]:
        row = (
            await session.execute(
                text("SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS st")
            )
        ).one()
        return {"pid": row.pid, "statement_timeout": row.st}

    return router


@asynccontextmanager
async def running_app(
    database_url: str, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(
        database_url=database_url,
        db_pool_size=1,
        db_max_overflow=0,
        rate_limit_enabled=False,
        cache_enabled=False,  # every request below must reach the database
        **overrides,
    )
    app = create_app(settings)
    app.include_router(_probe_router())
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


def _assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["status"] == 503
    assert body["type"].endswith("service-unavailable")
    # Nothing of the database's own error leaks to the client.
    assert "pg_sleep" not in response.text
    assert "sqlalchemy" not in response.text.lower()
    return body


async def test_exhausted_pool_answers_503_after_the_pool_timeout(migrated_postgres: str) -> None:
    async with running_app(migrated_postgres, db_pool_timeout=0.5) as (app, client):
        token = create_access_token(app.state.settings, NO_SUCH_USER).token
        headers = {"Authorization": f"Bearer {token}"}
        engine = app.state.database.engine

        held = await engine.connect()  # the pool's only connection, now checked out
        try:
            await held.execute(text("SELECT 1"))
            assert engine.pool.checkedout() == 1
            response = await client.get("/api/v1/auth/me", headers=headers)
            _assert_unavailable(response)
            assert response.headers.get("x-request-id")
        finally:
            await held.close()

        # Released: the same request now gets through to the database (and to its 401).
        response = await client.get("/api/v1/auth/me", headers=headers)
        assert response.status_code == 401, response.text
        assert engine.pool.checkedout() == 0


async def test_statement_timeout_cancels_a_runaway_query_and_keeps_the_connection(
    migrated_postgres: str,
) -> None:
    async with running_app(migrated_postgres, db_statement_timeout_ms=200, db_pool_timeout=5) as (
        app,
        client,
    ):
        before = await client.get("/_probe/backend")
        assert before.status_code == 200, before.text
        assert before.json()["statement_timeout"] == "200ms"

        # pg_sleep(5) would answer 200 after five seconds; the server cancels it at 200 ms.
        body = _assert_unavailable(await client.get("/_probe/sleep"))
        assert "did not answer in time" in body["detail"]

        # The pool holds one connection: the next request runs on the same backend, healthy,
        # and the connection was neither invalidated nor replaced.
        after = await client.get("/_probe/backend")
        assert after.status_code == 200, after.text
        assert after.json()["pid"] == before.json()["pid"]
        pool = app.state.database.engine.pool
        assert pool.checkedout() == 0
        assert pool.checkedin() == 1


async def test_without_a_statement_timeout_the_setting_is_off(migrated_postgres: str) -> None:
    """DB_STATEMENT_TIMEOUT_MS=0 leaves the server's own default (none on the test server)."""
    async with running_app(migrated_postgres, db_statement_timeout_ms=0) as (_, client):
        response = await client.get("/_probe/backend")
        assert response.status_code == 200, response.text
        assert response.json()["statement_timeout"] == "0"
