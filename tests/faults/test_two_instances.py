"""Two instances, one truth: two Etter processes on one PostgreSQL and one Redis, as two
machines behind a load balancer. A rate limit is one budget across both, and a write through
one is what the other serves next, its cache notwithstanding.

`two_instances` yields the two base URLs: any cross-instance property (idempotency keys, for
one) is tested by a function taking them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.factories import World
from tests.fixtures.processes import etter_process, production_env
from tests.servers import PostgresServer, RedisServer

API = "/api/v1"
READ_LIMIT = 20


@pytest.fixture
def two_instances(pg: PostgresServer, fault_redis: RedisServer) -> Iterator[tuple[str, str]]:
    env = production_env(pg.url, fault_redis.url, rate_limit_read=f"{READ_LIMIT}/minute")
    with etter_process(env) as first, etter_process(env) as second:
        yield first.url, second.url


async def test_a_rate_limit_is_one_budget_across_instances(
    two_instances: tuple[str, str], world: World, fault_redis: RedisServer
) -> None:
    headers = world.auth(world.other_member)  # a caller of its own: a fresh budget
    async with httpx.AsyncClient(timeout=30) as client:
        statuses = [
            (await client.get(f"{base}{API}/auth/me", headers=headers)).status_code
            for _ in range(READ_LIMIT)
            for base in two_instances
        ]
    # READ_LIMIT requests pass in all, not READ_LIMIT per instance.
    assert statuses.count(200) == READ_LIMIT, statuses
    assert statuses.count(429) == READ_LIMIT, statuses
    assert statuses[-2:] == [429, 429]


async def test_a_write_through_one_instance_is_served_by_the_other(
    two_instances: tuple[str, str], world: World
) -> None:
    first, second = two_instances
    url = f"{API}/companies/{world.other_tenant.id}"
    member, admin = world.auth(world.other_chro), world.auth(world.admin)
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(2):  # the second read is the second instance's cache hit
            seen = await client.get(f"{second}{url}", headers=member)
            assert seen.status_code == 200, seen.text
        original = seen.json()["name"]
        metrics = (await client.get(f"{second}/metrics")).text
        assert 'etter_cache_hits_total{cache="companies"} 1.0' in metrics, metrics
        changed = await client.patch(
            f"{first}{url}", json={"name": f"{original} Renamed"}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        after = await client.get(f"{second}{url}", headers=member)
    assert after.json()["name"] == f"{original} Renamed"
