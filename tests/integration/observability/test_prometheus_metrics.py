"""The Prometheus metrics layer, in-process: HTTP by route template, statements per request,
the pool, build info, readiness, and the METRICS_ENABLED switch."""

from __future__ import annotations

import asyncio

import pytest

from common.metrics import install_database_metrics
from tests.conftest import BACKEND
from tests.fixtures.apps import running_app
from tests.fixtures.observability import parse_samples, process_samples, total, value

pytestmark = pytest.mark.embedded

API = "/api/v1"
COMPANY_ROUTE = f"{API}/companies/{{company_id}}"


async def test_requests_are_counted_by_route_template_never_by_raw_path(client, world):
    headers = world.auth(world.member)
    before = process_samples()
    for _ in range(3):
        r = await client.get(f"{API}/companies/{world.tenant.id}", headers=headers)
        assert r.status_code == 200, r.text
    r = await client.get(f"{API}/companies/999999", headers=headers)
    assert r.status_code == 404
    after = parse_samples((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"method": "GET", "route": COMPANY_ROUTE, "status_class": "2xx"}
    assert delta("etter_http_requests_total", **ok) == 3
    assert delta("etter_http_requests_total", **{**ok, "status_class": "4xx"}) == 1
    latency = {"method": "GET", "route": COMPANY_ROUTE}
    assert delta("etter_http_request_duration_seconds_count", **latency) == 4
    # The histogram resolves the millisecond range: buckets at 1, 2.5, 5 ... 500 ms.
    les = {
        dict(labels)["le"]
        for name, labels in after
        if name == "etter_http_request_duration_seconds_bucket"
    }
    assert {"0.001", "0.005", "0.01", "0.05", "0.1", "0.25", "0.4", "0.5"} - les <= {"0.25"}
    assert not [key for key in after if str(world.tenant.id) in dict(key[1]).get("route", "")]


async def test_unknown_paths_share_one_label(client):
    before = process_samples()
    for path in ("/nope/1", "/nope/2", "/something/else"):
        assert (await client.get(path)).status_code == 404
    after = process_samples()
    labels = {"method": "GET", "route": "unmatched", "status_class": "4xx"}
    assert (
        value(after, "etter_http_requests_total", **labels)
        - value(before, "etter_http_requests_total", **labels)
        == 3
    )
    assert not any("/nope" in dict(key[1]).get("route", "") for key in after)


async def test_statements_per_request_and_their_latency(client, world, connection):
    headers = world.auth(world.chro)
    name = "etter_db_statements_per_request"
    # The app's sessions run on the test's connection (its rolled-back transaction), whose
    # engine is the test's: instrument that one as the app instruments its own.
    forget = install_database_metrics(connection.engine) if connection is not None else None
    try:
        before = process_samples()
        r = await client.get(f"{API}/users", headers=headers, params={"page_size": 5})
        assert r.status_code == 200, r.text
        after = process_samples()
    finally:
        if forget is not None:
            forget()
    route = {"route": f"{API}/users"}
    assert value(after, f"{name}_count", **route) - value(before, f"{name}_count", **route) == 1
    statements = value(after, f"{name}_sum", **route) - value(before, f"{name}_sum", **route)
    assert statements >= 1  # the page and its count, at least
    timed = value(after, "etter_db_statement_duration_seconds_count") - value(
        before, "etter_db_statement_duration_seconds_count"
    )
    assert timed >= statements


async def test_in_flight_pool_build_info_and_readiness_gauges(client):
    r = await client.get("/health/ready")
    assert r.status_code == 200
    samples = parse_samples((await client.get("/metrics")).text)
    # Only the scrape itself is in flight while /metrics renders.
    assert value(samples, "etter_http_requests_in_flight") >= 1
    assert value(samples, "etter_db_pool_checked_out") >= 0
    assert ("etter_db_pool_waiting", ()) in samples
    assert ("etter_db_pool_overflow", ()) in samples
    assert value(samples, "etter_dependency_up", dependency="database") == 1
    build = [labels for name, labels in samples if name == "etter_build_info"]
    assert build
    assert dict(build[0])["version"] == "1.0.0"
    assert dict(build[0])["revision"]
    assert total(samples, "etter_redis_errors_total", component="cache") >= 0
    assert any(name.startswith("process_") for name, _ in samples)


async def test_pool_gauges_follow_checkouts(app):
    engine = app.state.database.engine
    before = value(process_samples(), "etter_db_pool_checked_out")
    async with engine.connect(), engine.connect():
        during = value(process_samples(), "etter_db_pool_checked_out")
    after = value(process_samples(), "etter_db_pool_checked_out")
    assert during - before == 2
    assert after == before


async def test_metrics_enabled_false_turns_the_layer_off(settings, connection):
    async with running_app(settings, connection, metrics_enabled=False) as app:
        from tests.fixtures.apps import client_for

        async with client_for(app) as client:
            before = process_samples()
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/metrics")).status_code == 404
            after = process_samples()
    live = {"method": "GET", "route": "/health/live", "status_class": "2xx"}
    assert value(after, "etter_http_requests_total", **live) == value(
        before, "etter_http_requests_total", **live
    )


@pytest.mark.skipif(BACKEND == "sqlite", reason="the SQLite engine has no pool limits")
async def test_requests_waiting_for_a_connection_are_counted(settings):
    # A long pool timeout: the waiter must still be waiting when it is counted (the default
    # second can pass while this busy test machine collects the samples).
    async with running_app(
        settings, None, db_pool_size=1, db_max_overflow=0, db_pool_timeout=30
    ) as app:
        engine = app.state.database.engine
        base = value(process_samples(), "etter_db_pool_waiting")
        async with engine.connect():
            waiter = asyncio.create_task(engine.connect().start())
            for _ in range(200):  # until the task is inside the pool's checkout
                await asyncio.sleep(0.01)
                if value(process_samples(), "etter_db_pool_waiting") > base:
                    break
            samples = process_samples()
            assert value(samples, "etter_db_pool_waiting") - base == 1
            assert value(samples, "etter_db_pool_checked_out") >= 1
        connection = await waiter
        await connection.close()
        assert value(process_samples(), "etter_db_pool_waiting") == base
