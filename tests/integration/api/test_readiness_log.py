"""GET /health/ready says in the log why it failed (which dependency, the error), once per change
of state rather than on every probe, and keeps etter_dependency_up."""

from __future__ import annotations

import pytest

from tests import servers
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.logs import captured_logs
from tests.fixtures.observability import process_samples, value


@pytest.fixture
def own_redis():
    server = servers.RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def probe(client, times: int) -> set[int]:
    return {(await client.get("/health/ready")).status_code for _ in range(times)}


async def test_a_redis_outage_is_logged_once_with_its_reason_and_its_end_once(
    settings, connection, own_redis
):
    async with (
        running_app(settings, connection, redis_url=own_redis.url) as app,
        client_for(app) as client,
    ):
        with captured_logs("INFO") as logs:
            assert await probe(client, 2) == {200}
            own_redis.stop()
            assert await probe(client, 3) == {503}
            down = value(process_samples(), "etter_dependency_up", dependency="redis")
            own_redis.start()
            assert await probe(client, 3) == {200}
        up = value(process_samples(), "etter_dependency_up", dependency="redis")

    failed = logs.named("readiness_failed")
    assert len(failed) == 1, logs.text
    assert failed[0]["dependency"] == "redis"
    assert failed[0]["level"] == "error"
    assert "Error" in failed[0]["error"] or "no answer" in failed[0]["error"]
    assert failed[0]["request_id"]  # logged while serving the probe
    recovered = logs.named("readiness_recovered")
    assert [e["dependency"] for e in recovered] == ["redis"]
    assert logs.named("readiness_failed")[0]["timestamp"] < recovered[0]["timestamp"]
    assert (down, up) == (0, 1)


async def test_a_database_that_never_answered_is_logged_at_the_first_probe(settings):
    from tests.fixtures.apps import override

    closed = f"postgresql://nobody@127.0.0.1:{servers.free_port()}/etter"
    broken = override(settings, database_url=closed, db_pool_timeout=1)
    async with running_app(broken, None) as app, client_for(app) as client:
        with captured_logs("INFO") as logs:
            assert await probe(client, 3) == {503}
    failed = logs.named("readiness_failed")
    assert [e["dependency"] for e in failed] == ["database"]
    assert failed[0]["error"]
