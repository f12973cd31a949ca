"""PostgreSQL restarted, or every pooled connection terminated, under steady traffic: requests
fail fast with a 503 `database-unavailable` problem and `Retry-After` while the database is
away (none waits past the pool timeout), and all succeed again within seconds of its return,
without restarting Etter.

The cache is off here so that every request needs the database (with it on, the cached
responses would simply go on succeeding).
"""

from __future__ import annotations

import asyncio
import time

from tests.fixtures.factories import World
from tests.fixtures.processes import Outcome, Traffic, etter_process, production_env
from tests.servers import PostgresServer

WORKFLOWS = "/api/v1/workflows"
POOL_TIMEOUT = 2
OUTAGE_SECONDS = 4
# A request that has not been answered by then hangs: the client gives up and records it.
CLIENT_TIMEOUT = POOL_TIMEOUT + 5


def env_for(pg: PostgresServer) -> dict[str, str]:
    return production_env(pg.url, None, cache_enabled="false", db_pool_timeout=POOL_TIMEOUT)


def assert_ok_or_unavailable(outcomes: list[Outcome]) -> list[Outcome]:
    """Every outcome is a 200 or a 503 database-unavailable problem with Retry-After (no 500,
    no hang); the 503s are returned."""
    unavailable = []
    for outcome in outcomes:
        if outcome.status == 200:
            continue
        assert outcome.status == 503, outcome
        assert outcome.problem_type == "urn:etter:problem:database-unavailable", outcome
        assert int(outcome.retry_after or 0) >= 1, outcome
        unavailable.append(outcome)
    return unavailable


def recovered(since: float, count: int = 20):
    def reached(traffic: Traffic) -> bool:
        tail = traffic.since(since)[-count:]
        return len(tail) == count and all(o.status == 200 for o in tail)

    return reached


async def test_postgres_restart_mid_traffic_is_503_then_recovers(
    pg: PostgresServer, world: World
) -> None:
    headers = world.auth(world.member)
    with etter_process(env_for(pg)) as app:
        traffic = Traffic(
            lambda c: c.get(WORKFLOWS, headers=headers), app.url, timeout=CLIENT_TIMEOUT
        )
        async with traffic.running():
            await traffic.until(lambda t: len(t.outcomes) >= 20, 30)
            stopping = time.monotonic()
            await asyncio.to_thread(pg.stop, "fast")
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(pg.start)
            back = time.monotonic()
            await traffic.until(recovered(back), 15)

    unavailable = assert_ok_or_unavailable(traffic.outcomes)
    assert len(unavailable) >= 10, traffic.statuses()  # the outage was seen, and answered
    # Before the stop every request succeeded (one in flight at that moment may be cut: 503).
    before = [o for o in traffic.outcomes if o.started + o.elapsed < stopping]
    assert [o for o in before if o.status != 200] == []


async def test_every_pooled_connection_terminated_mid_traffic_recovers(
    pg: PostgresServer, world: World
) -> None:
    headers = world.auth(world.member)
    with etter_process(env_for(pg)) as app:
        traffic = Traffic(
            lambda c: c.get(WORKFLOWS, headers=headers),
            app.url,
            concurrency=4,
            timeout=CLIENT_TIMEOUT,
        )
        async with traffic.running():
            await traffic.until(lambda t: len(t.outcomes) >= 40, 30)
            terminated = await asyncio.to_thread(
                pg.psql,
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'etter-api') AS t",
            )
            cut = time.monotonic()
            await traffic.until(recovered(cut, 40), 15)

    assert int(terminated) >= 1
    # Pre-ping replaces the dead idle connections unseen; only a query cut mid-flight may fail.
    unavailable = assert_ok_or_unavailable(traffic.outcomes)
    assert len(unavailable) <= 4, traffic.statuses()
