"""Budgets that keep the hot path cheap, counted rather than timed (issue 9).

- SQL statements per request (tests/fixtures/query_counter.py): `/auth/me` with the caller
  cached: 0; a page of 20: at most 2; a cached detail: 0.
- Redis round trips of the app's cache client on a hit: at most 2 (the rate limiter has a pool
  of its own and is not counted).
- A request that only reads sends no transaction control (no BEGIN, no COMMIT) on the app's own
  sessions, a write still commits once, and a read that tries to write is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import asyncpg.transaction
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from models import Company
from settings.config import Settings
from settings.database import ReadOnlyRequestError
from settings.server import create_app
from tests.fixtures.factories import World, build_world
from tests.fixtures.query_counter import count_statements
from tests.fixtures.scratch_database import scratch_database
from tests.fixtures.workflows import create_workflow

API = "/api/v1"
PAGE = {"page_size": 20}


@dataclass
class RoundTrips:
    count: int = 0


@contextmanager
def count_redis_round_trips(app: FastAPI) -> Iterator[RoundTrips]:
    """Round trips of the app's Redis client (cache, not rate limiting): redis-py takes one
    connection from the pool per command and per pipeline, so each checkout is one."""
    redis: Redis = app.state.redis
    pool = redis.connection_pool
    counter = RoundTrips()
    real = pool.get_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counter.count += 1
        return await real(*args, **kwargs)

    pool.get_connection = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        del pool.get_connection


async def warm(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    """The request once, so the caller (and a cached value) are in the cache; its body."""
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def filled(db: Any, world: World) -> World:
    for number in range(25):
        await create_workflow(db, world.tenant, name=f"Budget workflow {number:02d}")
    await db.commit()
    return world


# --- SQL statements ---------------------------------------------------------------------------


async def test_me_with_the_caller_cached_sends_no_sql(app, client, world):
    headers = world.auth(world.member)
    first = await warm(client, f"{API}/auth/me", headers)
    with count_statements(app) as counter:
        second = await client.get(f"{API}/auth/me", headers=headers)
    assert second.status_code == 200
    assert counter.count == 0, counter
    assert second.json() == first
    assert first["id"] == world.member.id
    assert first["email"] == world.member.email


@pytest.mark.parametrize("resource", ["workflows", "users"])
async def test_a_page_of_twenty_costs_at_most_two_statements(app, client, filled, resource):
    headers = filled.auth(filled.chro)
    await warm(client, f"{API}/auth/me", headers)
    with count_statements(app) as counter:
        response = await client.get(f"{API}/{resource}", params=PAGE, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["page_size"] == 20
    assert len(body["items"]) == min(20, body["total"])
    assert counter.count <= 2, counter


async def test_a_page_past_the_end_still_knows_the_total(app, client, filled):
    headers = filled.auth(filled.chro)
    response = await client.get(
        f"{API}/workflows", params={"page": 9, "page_size": 20}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["items"] == []
    assert body["total"] == 25
    assert body["pages"] == 2


@pytest.mark.parametrize("path", ["companies/{company}", "chro/dashboard"])
async def test_a_cached_detail_sends_no_sql(app, client, world, path):
    headers = world.auth(world.chro)
    url = f"{API}/{path.format(company=world.tenant.id)}"
    first = await warm(client, url, headers)
    with count_statements(app) as counter:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200
    assert counter.count == 0, counter
    assert response.json() == first


# --- Redis round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "budget"),
    [("auth/me", 1), ("companies/{company}", 2), ("chro/dashboard", 2)],
)
async def test_a_cache_hit_costs_at_most_two_redis_round_trips(app, client, world, path, budget):
    if app.state.redis is None:
        pytest.skip("no Redis in this run")
    headers = world.auth(world.chro)
    url = f"{API}/{path.format(company=world.tenant.id)}"
    await warm(client, url, headers)
    with count_redis_round_trips(app) as trips, count_statements(app) as statements:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200
    assert statements.count == 0, statements
    assert 1 <= trips.count <= budget, trips


async def test_the_redis_counter_sees_a_miss(app, client, world):
    """The counter can fail: a miss (read, generations, lock, store, unlock) is over budget."""
    if app.state.redis is None:
        pytest.skip("no Redis in this run")
    headers = world.auth(world.chro)
    await warm(client, f"{API}/auth/me", headers)
    with count_redis_round_trips(app) as trips:
        response = await client.get(f"{API}/companies/{world.tenant.id}", headers=headers)
    assert response.status_code == 200
    assert trips.count > 2, trips


# --- transaction control on the app's own sessions --------------------------------------------


@asynccontextmanager
async def own_app(postgres_url: str, settings: Settings) -> AsyncIterator[tuple[FastAPI, World]]:
    """An app on a scratch database with its own sessions (not the test's savepoint)."""
    async with scratch_database(postgres_url) as url:
        application = create_app(settings.model_copy(update={"database_url": url}))
        async with LifespanManager(application):
            async with application.state.database.sessionmaker() as session:
                world = await build_world(session, settings)
                await session.commit()
            yield application, world


@pytest.fixture
async def isolated(postgres_url: str, settings: Settings) -> AsyncIterator[tuple[FastAPI, World]]:
    if settings.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite runs every request in a transaction")
    async with own_app(postgres_url, settings) as pair:
        yield pair


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """BEGIN and COMMIT as asyncpg sends them (they are not cursor statements, so the statement
    counter never sees them): "begin" / "commit" / "rollback" in order."""
    sent: list[str] = []
    for name in ("start", "commit", "rollback"):
        real = getattr(asyncpg.transaction.Transaction, name)

        async def counted(self: Any, _real: Any = real, _name: str = name) -> Any:
            sent.append("begin" if _name == "start" else _name)
            return await _real(self)

        monkeypatch.setattr(asyncpg.transaction.Transaction, name, counted)
    return sent


async def test_reads_send_no_transaction_control_and_writes_commit(isolated, transactions):
    app, world = isolated
    headers = world.auth(world.chro)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with count_statements(app.state.database.engine) as read:
            response = await client.get(f"{API}/workflows", params=PAGE, headers=headers)
        assert response.status_code == 200, response.text
        assert read.count >= 1  # the caller and the page
        assert transactions == []

        body = {"name": "Committed", "steps": [{"name": "s", "minutes": 5, "automation_score": 1}]}
        created = await client.post(f"{API}/workflows", json=body, headers=headers)
        assert created.status_code == 201, created.text
        assert transactions == ["begin", "commit"]

        # The connection went back to the pool in its default mode: the next read is
        # autocommit again, and sees the committed row.
        transactions.clear()
        listed = await client.get(f"{API}/workflows", params=PAGE, headers=headers)
        assert [w["name"] for w in listed.json()["items"]] == ["Committed"]
        assert transactions == []


async def test_a_read_only_session_refuses_to_write(isolated):
    app, _ = isolated
    async with app.state.database.session(read_only=True) as session:
        session.add(Company(name="Never", slug="never", country="US"))
        with pytest.raises(ReadOnlyRequestError):
            await session.flush()
    async with app.state.database.session(read_only=False) as session:
        session.add(Company(name="Written", slug="written", country="US"))
        await session.commit()
