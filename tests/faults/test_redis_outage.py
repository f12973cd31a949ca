"""Redis killed (SIGKILL) under steady traffic: every request still succeeds, because the cache
and the rate limiter fail open (logged and counted), and once Redis is back the running process
uses it again, without a restart."""

from __future__ import annotations

import asyncio
import time

import httpx
from redis import Redis

from tests.fixtures.factories import World
from tests.fixtures.processes import Traffic, etter_process, metric_value, production_env
from tests.servers import PostgresServer, RedisServer

WORKFLOWS = "/api/v1/workflows"


async def test_redis_killed_mid_traffic_fails_open_and_is_used_again_when_back(
    pg: PostgresServer, world: World, fault_redis: RedisServer
) -> None:
    # Cache and rate limiting on, as in production; Redis errors retried after 1 s.
    env = production_env(
        pg.url, fault_redis.url, cache_retry_seconds=1, rate_limit_redis_retry_seconds=1
    )
    headers = world.auth(world.member)
    with etter_process(env) as app:
        traffic = Traffic(lambda c: c.get(WORKFLOWS, headers=headers), app.url)
        async with traffic.running():
            await traffic.until(lambda t: len(t.outcomes) >= 20, 30)
            fault_redis.kill()
            killed = time.monotonic()
            await traffic.until(lambda t: len(t.since(killed)) >= 60, 30)
            await asyncio.to_thread(fault_redis.start)  # empty: no persistence
            fresh = Redis.from_url(fault_redis.url)
            # The process writes to the new Redis again (rate-limit counters, cache entries)
            # and then reads its own entries back: Redis counts the hits itself.
            await traffic.until(
                lambda _: int(fresh.info("stats")["keyspace_hits"]) > 0 and fresh.dbsize() > 0,
                30,
            )
            fresh.close()
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{app.url}/metrics")).text
        log = app.log_text()

    during = traffic.since(killed)
    assert traffic.statuses() == {200: len(traffic.outcomes)}, traffic.statuses()
    assert len(during) >= 60
    # Failing open was logged and counted, not silent.
    assert metric_value(metrics, "etter_cache_errors_total") > 0, metrics
    assert metric_value(metrics, "etter_rate_limit_fallback_total") > 0, metrics
    assert "redis" in log.lower()
