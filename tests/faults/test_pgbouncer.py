"""Etter behind a real PgBouncer in transaction mode (DB_PGBOUNCER=true): the API's smoke set
(login, lists, create, cached detail, a write that commits) through a real process, under
concurrency, with fewer server connections than the app's pool so that consecutive
transactions of one app connection land on different server connections — where a prepared
statement cached by name would be missing or another's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.factories import PASSWORD, World
from tests.fixtures.processes import etter_process, production_env
from tests.servers import PgBouncer, PostgresServer, RedisServer

API = "/api/v1"


@pytest.fixture(scope="module")
def bouncer(pg: PostgresServer) -> Iterator[PgBouncer]:
    server = PgBouncer(pg.port, pool_size=2)
    server.start()
    try:
        yield server
    finally:
        server.close()


async def smoke(client: httpx.AsyncClient, world: World, round_: int) -> list[int]:
    """One pass of the smoke set; the statuses, in order."""
    login = await client.post(
        f"{API}/auth/token", data={"username": world.chro.email, "password": PASSWORD}
    )
    chro = {"Authorization": f"Bearer {login.json()['access_token']}"}
    member = world.auth(world.member)
    created = await client.post(
        f"{API}/workflows",
        json={
            "name": f"Through PgBouncer {round_}",
            "steps": [{"name": "Step", "minutes": 3, "automation_score": 0.4}],
        },
        headers=chro,
    )
    url = f"{API}/workflows/{created.json()['id']}"
    renamed = await client.patch(url, json={"name": f"Renamed {round_}"}, headers=chro)
    fetched = await client.get(url, headers=member)
    assert fetched.json()["name"] == f"Renamed {round_}"
    responses = [
        login,
        created,
        renamed,
        fetched,
        await client.get(f"{API}/workflows", headers=member),
        await client.get(f"{API}/users", headers=chro),
        await client.get(f"{API}/companies/{world.tenant.id}", headers=member),  # cached
        await client.get(f"{API}/companies/{world.tenant.id}", headers=member),
        await client.get(f"{API}/auth/me", headers=member),
    ]
    return [r.status_code for r in responses]


async def test_the_smoke_set_passes_through_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, fault_redis: RedisServer, world: World
) -> None:
    env = production_env(
        bouncer.url,
        fault_redis.url,
        db_pgbouncer="true",
        db_pool_size=8,
        rate_limit_login="1000/minute",
        rate_limit_login_account="1000/minute",
    )
    with etter_process(env) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            rounds = await asyncio.gather(*(smoke(client, world, n) for n in range(8)))
    assert rounds == [[200, 201, 200, 200, 200, 200, 200, 200, 200]] * 8
