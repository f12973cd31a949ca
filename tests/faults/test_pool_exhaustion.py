"""The pool exhausted by slow requests: the others get a 503 with `Retry-After` once
DB_POOL_TIMEOUT has passed (never a hang), nothing deadlocks, and the service recovers by
itself when the slow requests finish.

The slow requests are real: the test holds an exclusive lock on the workflows table, so the
workflow list's own query waits in PostgreSQL, holding its pooled connection.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from tests.fixtures.factories import World
from tests.fixtures.processes import Traffic, etter_process, production_env
from tests.servers import PostgresServer

WORKFLOWS = "/api/v1/workflows"
ME = "/api/v1/auth/me"
POOL = 2
POOL_TIMEOUT = 2


async def waiting_on_locks(pg: PostgresServer) -> int:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'etter-api' AND wait_event_type = 'Lock'"
    )
    return int(await asyncio.to_thread(pg.psql, sql))


async def test_pool_exhausted_by_slow_requests_sheds_then_recovers(
    pg: PostgresServer, world: World
) -> None:
    env = production_env(
        pg.url,
        None,
        cache_enabled="false",
        db_pool_size=POOL,
        db_max_overflow=0,
        db_pool_timeout=POOL_TIMEOUT,
    )
    headers = world.auth(world.member)
    with etter_process(env) as app:
        locker = await asyncpg.connect(pg.url)
        async with httpx.AsyncClient(base_url=app.url, timeout=60) as client:
            await locker.execute("BEGIN; LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
            slow = [
                asyncio.create_task(client.get(WORKFLOWS, headers=headers)) for _ in range(POOL)
            ]
            deadline = time.monotonic() + 20
            while await waiting_on_locks(pg) < POOL:  # both connections held, waiting
                assert time.monotonic() < deadline, "the slow requests never reached the lock"
                await asyncio.sleep(0.05)

            traffic = Traffic(
                lambda c: c.get(ME, headers=headers),
                app.url,
                concurrency=4,
                timeout=POOL_TIMEOUT + 5,
            )
            async with traffic.running():
                await traffic.until(lambda t: len(t.outcomes) >= 8, 30)
            shed = list(traffic.outcomes)

            await locker.execute("ROLLBACK")
            finished = await asyncio.gather(*slow)
            after = [await client.get(ME, headers=headers) for _ in range(10)]
        await locker.close()

    for outcome in shed:
        assert outcome.status == 503, outcome
        assert outcome.problem_type == "urn:etter:problem:service-unavailable", outcome
        assert int(outcome.retry_after or 0) >= 1, outcome
    assert [r.status_code for r in finished] == [200] * POOL
    assert [r.status_code for r in after] == [200] * 10
