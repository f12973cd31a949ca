"""DATABASE_REPLICA_URL against a real streaming replica (`pg_basebackup -R` of the primary):
reads go to the replica, a caller's reads after its own write go to the primary for
REPLICA_STICKY_SECONDS (read-your-writes), and with the replica down reads fall back to the
primary, then return to the replica once it is back.

The replica's replay is paused (`pg_wal_replay_pause()`) to make its lag visible: a workflow
created on the primary is missing there until replay resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.factories import World
from tests.fixtures.processes import Traffic, etter_process, production_env
from tests.servers import PostgresServer, RedisServer

WORKFLOWS = "/api/v1/workflows"
STICKY_SECONDS = 2


@pytest.fixture(scope="module")
def replica(pg: PostgresServer, world: World) -> Iterator[PostgresServer]:
    standby = pg.replica()
    try:
        yield standby
    finally:
        standby.close()


def replica_env(pg: PostgresServer, replica: PostgresServer, redis: RedisServer) -> dict:
    return production_env(
        pg.url,
        redis.url,
        cache_enabled="false",  # every read reaches a database
        database_replica_url=replica.url,
        replica_sticky_seconds=STICKY_SECONDS,
        replica_retry_seconds=1,
    )


def app_connections(server: PostgresServer) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'etter-api'"
    return int(server.psql(sql))


async def eventually_status(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], status: int, within: float
) -> None:
    deadline = time.monotonic() + within
    while (response := await client.get(url, headers=headers)).status_code != status:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)


async def test_reads_use_the_replica_and_a_writer_reads_its_own_writes(
    pg: PostgresServer, replica: PostgresServer, fault_redis: RedisServer, world: World
) -> None:
    writer, reader = world.auth(world.chro), world.auth(world.member)
    with etter_process(replica_env(pg, replica, fault_redis)) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            assert (await client.get(WORKFLOWS, headers=reader)).status_code == 200
            assert await asyncio.to_thread(app_connections, replica) >= 1
            await asyncio.to_thread(replica.psql, "SELECT pg_wal_replay_pause()")
            try:
                created = await client.post(
                    WORKFLOWS,
                    json={
                        "name": "Written to the primary",
                        "steps": [{"name": "Step", "minutes": 5, "automation_score": 0.5}],
                    },
                    headers=writer,
                )
                assert created.status_code == 201, created.text
                url = f"{WORKFLOWS}/{created.json()['id']}"
                # The writer reads its write at once (primary); another caller reads the paused
                # replica, which has not replayed it yet.
                assert (await client.get(url, headers=writer)).status_code == 200
                assert (await client.get(url, headers=reader)).status_code == 404
                # The writer's window is bounded: afterwards its reads use the replica again.
                await eventually_status(client, url, writer, 404, STICKY_SECONDS + 10)
            finally:
                await asyncio.to_thread(replica.psql, "SELECT pg_wal_replay_resume()")
            await eventually_status(client, url, reader, 200, 20)


async def test_reads_fall_back_to_the_primary_while_the_replica_is_down(
    pg: PostgresServer, replica: PostgresServer, fault_redis: RedisServer, world: World
) -> None:
    reader = world.auth(world.chro)
    with etter_process(replica_env(pg, replica, fault_redis)) as app:
        traffic = Traffic(lambda c: c.get(WORKFLOWS, headers=reader), app.url)
        async with traffic.running():
            await traffic.until(lambda t: len(t.outcomes) >= 20, 30)
            await asyncio.to_thread(replica.stop, "fast")
            stopped = time.monotonic()
            await traffic.until(lambda t: len(t.since(stopped)) >= 50, 30)
            down = traffic.since(stopped)
            await asyncio.to_thread(replica.start)
            back = time.monotonic()
            # The pool's fallback connections are dropped after REPLICA_RETRY_SECONDS and the
            # replica is connected to again.
            await traffic.until(lambda _: app_connections(replica) >= 1, 30)
            await traffic.until(lambda t: len(t.since(back)) >= 20, 30)

    # A query the stop cut mid-flight may fail (503), one per client loop at most; every read
    # sent after the stop is answered.
    failed = [o for o in traffic.outcomes if o.status != 200]
    assert len(failed) <= traffic.concurrency, traffic.statuses()
    for outcome in failed:
        assert outcome.status == 503, outcome
        assert outcome.started < stopped, outcome
    assert len(down) >= 50
