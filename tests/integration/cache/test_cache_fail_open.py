"""Fail open: with the Redis server stopped, every cached endpoint still answers correctly from
the database; the errors are counted and logged once; caching resumes when Redis is back.

The test starts a Redis server of its own (the suite's is shared by every other test) and
really stops and restarts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from common.cache import breaker
from services.cache_service import KEY_PREFIX, CacheName
from tests.conftest import make_settings
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.cache import API, CacheCounts, entry_keys
from tests.servers import RedisServer, redis_server

COMPANIES = f"{API}/companies"
AUTOCOMPLETE = f"{API}/users/autocomplete"
ME = f"{API}/auth/me"


class LogRecorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_: Any) -> None:
        self.events.append(event)

    def info(self, event: str, **_: Any) -> None:
        self.events.append(event)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, so stopping it leaves the run's server alone."""
    with redis_server() as server:
        yield server


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(breaker, "log", recorder)
    return recorder


@pytest.fixture
async def client_on_own_redis(
    settings, connection, own_redis, world
) -> AsyncIterator[httpx.AsyncClient]:
    own = make_settings(
        database_url=settings.database_url,
        redis_url=own_redis.url,
        storage_dir=settings.storage_dir,
        cache_retry_seconds=0,  # try Redis on every call: no waiting in the test
        redis_socket_timeout=10,  # a refused connection fails at once; a slow test box does not
    )
    async with running_app(own, connection) as application, client_for(application) as client:
        yield client


async def stored_keys(server: RedisServer) -> list[str]:
    async with Redis.from_url(server.url) as redis:
        return [key.decode() async for key in redis.scan_iter(f"{KEY_PREFIX}:*")]


async def test_the_api_answers_from_the_database_while_redis_is_down(
    client_on_own_redis, own_redis, world, log
):
    client = client_on_own_redis
    member, admin = world.auth(world.member), world.auth(world.admin)
    detail = f"{COMPANIES}/{world.tenant.id}"
    urls = [detail, COMPANIES, f"{AUTOCOMPLETE}?q=mi", ME]
    healthy = {}
    for url in urls:
        r = await client.get(url, headers=member)
        assert r.status_code == 200, r.text
        healthy[url] = r.json()
    assert entry_keys(await stored_keys(own_redis), "companies")

    own_redis.stop()
    before = CacheCounts.of(CacheName.COMPANIES)
    for _ in range(2):
        for url in urls:
            r = await client.get(url, headers=member)
            assert r.status_code == 200, r.text
            assert r.json() == healthy[url]
    assert (await client.get(detail, headers=member)).headers["etag"]
    assert (CacheCounts.of(CacheName.COMPANIES) - before).errors >= 2 * len(urls)
    assert log.events == ["cache_unavailable"]  # once for the whole outage

    # Writes work too, and what they change shows at once.
    r = await client.patch(detail, json={"name": "Renamed In Outage"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (await client.get(detail, headers=member)).json()["name"] == "Renamed In Outage"
    r = await client.delete(f"{API}/users/{world.other_member.id}", headers=world.auth(world.chro))
    assert r.status_code == 204, r.text
    assert (await client.get(ME, headers=world.auth(world.other_member))).status_code == 401

    own_redis.start()
    before = CacheCounts.of(CacheName.COMPANIES)
    for _ in range(3):
        r = await client.get(detail, headers=member)
        assert r.status_code == 200
        assert r.json()["name"] == "Renamed In Outage"
    assert log.events == ["cache_unavailable", "cache_recovered"]
    assert (CacheCounts.of(CacheName.COMPANIES) - before).hits >= 1
    assert entry_keys(await stored_keys(own_redis), "companies")
