"""A request id for every request, and one access-log event per request with what ops needs."""

from __future__ import annotations

import logging
import re

import pytest
import structlog

from api.deps import CurrentUser
from tests.fixtures.apps import add_test_route, client_for, running_app
from tests.fixtures.logs import captured_logs

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_every_response_gets_a_generated_request_id(client):
    ids = set()
    for path in ("/health/live", "/api/v1/auth/me", "/api/v1/nowhere"):
        response = await client.get(path)
        assert GENERATED_ID.match(response.headers["x-request-id"]), path
        ids.add(response.headers["x-request-id"])
    assert len(ids) == 3


async def test_a_valid_incoming_request_id_is_kept(client):
    for request_id in ("abc-123_XYZ.9", "0" * 128, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"):
        response = await client.get("/health/live", headers={"X-Request-ID": request_id})
        assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["short", "has spaces in it", "x" * 129, "semi;colon;id", "../../etc/passwd", "ünïcödé-id"],
)
async def test_anything_else_is_replaced(client, request_id):
    response = await client.get(
        "/health/live", headers={"X-Request-ID": request_id.encode("latin-1")}
    )
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_one_access_event_per_request_with_route_user_and_size(client, world):
    member = world.member
    with captured_logs("INFO") as logs:
        response = await client.get(
            f"/api/v1/users/{member.id}",
            headers={**world.auth(member), "Accept-Encoding": "identity"},
        )
        anonymous = await client.get("/api/v1/auth/me")
    assert response.status_code == 200
    events = logs.named("request")
    assert len(events) == 2, logs.text
    first, second = events
    assert first["request_id"] == response.headers["x-request-id"]
    assert first["method"] == "GET"
    assert first["route"] == "/api/v1/users/{user_id}"
    assert first["path"] == f"/api/v1/users/{member.id}"
    assert first["status"] == 200
    assert first["response_bytes"] == len(response.content)
    assert first["duration_ms"] >= 0
    assert first["user_id"] == member.id
    assert first["company_id"] == member.company_id
    assert first["client_ip"] == "127.0.0.1"
    assert first["logger"] == "etter.access"
    # The next request starts with a clean context: no user leaks into it.
    assert second["request_id"] == anonymous.headers["x-request-id"]
    assert second["status"] == 401
    assert second["user_id"] is None
    assert second["company_id"] is None


async def test_unmatched_route_is_logged_without_a_template(client):
    with captured_logs("INFO") as logs:
        await client.get("/api/v1/definitely-not-a-route")
    [event] = logs.named("request")
    assert event["route"] is None
    assert event["status"] == 404


@pytest.mark.own_app
async def test_every_event_while_serving_carries_request_id_and_user(app, client, world):
    async def whoami(principal: CurrentUser) -> dict[str, int]:
        structlog.get_logger("etter.test").info("structlog_inside")
        logging.getLogger("etter.test.stdlib").warning("stdlib inside")
        return {"id": principal.user_id}

    add_test_route(app, "/test-only/whoami", whoami)
    with captured_logs("INFO") as logs:
        response = await client.get("/test-only/whoami", headers=world.auth(world.member))
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    inside = [e for e in logs.events() if e["event"] in ("structlog_inside", "stdlib inside")]
    assert len(inside) == 2, logs.text
    for event in inside:
        assert event["request_id"] == request_id
        assert event["user_id"] == world.member.id
        assert event["company_id"] == world.member.company_id
    assert {e["logger"] for e in inside} == {"etter.test", "etter.test.stdlib"}


async def test_client_ip_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    settings, connection
):
    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.0.0.5"}
    async with running_app(settings, connection, trusted_proxies="127.0.0.1,10.0.0.0/8") as app:
        async with client_for(app) as client:
            with captured_logs("INFO") as logs:
                await client.get("/health/live", headers=forwarded)
        [behind_proxy] = logs.named("request")
    async with running_app(settings, connection) as app:
        async with client_for(app) as client:
            with captured_logs("INFO") as logs:
                await client.get("/health/live", headers=forwarded)
        [direct] = logs.named("request")
    assert behind_proxy["client_ip"] == "203.0.113.7"
    assert direct["client_ip"] == "127.0.0.1"
