"""Sentry, against a local receiver that accepts the SDK's real envelopes over HTTP: an
unexpected error arrives with its request id, tagged with the caller, and without secrets; a
client error (4xx) never arrives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import sentry_sdk
from fastapi import Request

from api.deps import CurrentUser
from common.error_tracker import scrub_event
from tests.fixtures.apps import add_test_route, client_for, running_app
from tests.fixtures.observability import Receiver, envelope_items, http_receiver

pytestmark = pytest.mark.embedded

EMAIL = "alice.secret@victim.example"
PASSWORD = "Correct-Horse-Battery-9"
COOKIE = "session-cookie-value-42"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as server:
        yield server


@pytest.fixture
async def sentry_app(settings, connection, receiver) -> AsyncIterator:
    dsn = f"http://publickey0123456789abcdef@127.0.0.1:{receiver.port}/42"
    # The lifespan's asyncio integration wraps every task the (session-wide) loop creates.
    loop = asyncio.get_running_loop()
    task_factory = loop.get_task_factory()
    try:
        async with running_app(settings, connection, sentry_dsn=dsn) as app:
            yield app
    finally:
        sentry_sdk.init()  # no DSN: the SDK is inactive again for the rest of the run
        loop.set_task_factory(task_factory)


def events_of(receiver: Receiver) -> list[dict]:
    return [
        payload
        for request in receiver.requests
        for header, payload in envelope_items(request.body)
        if header.get("type") == "event" and isinstance(payload, dict)
    ]


async def test_a_500_arrives_with_request_id_and_caller_and_without_secrets(
    sentry_app, receiver, world
):
    async def boom(request: Request, principal: CurrentUser) -> None:
        await request.body()
        raise RuntimeError(f"exploded for {EMAIL} holding {request.headers['authorization']}")

    add_test_route(sentry_app, "/test-only/boom", boom, methods=("POST",))
    headers = world.auth(world.member)
    token = headers["Authorization"].split()[1]
    async with client_for(sentry_app) as client:
        r = await client.post(
            "/test-only/boom",
            params={"email": EMAIL, "token": token},
            json={"email": EMAIL, "password": PASSWORD},
            headers={**headers, "Cookie": f"session={COOKIE}"},
        )
    assert r.status_code == 500
    request_id = r.headers["x-request-id"]
    assert r.json()["request_id"] == request_id
    sentry_sdk.flush(timeout=10)
    receiver.wait_for(lambda requests: events_of(receiver))

    events = events_of(receiver)
    assert len(events) == 1, events
    event = events[0]
    assert event["tags"]["request_id"] == request_id
    assert event["tags"]["user_id"] == str(world.member.id)
    assert event["tags"]["company_id"] == str(world.member.company_id)
    assert event["environment"] == "test"
    assert event["release"].startswith("etter-api@1.0.0+")
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    everything = b"".join(request.body for request in receiver.requests)
    for secret in (token, EMAIL, PASSWORD, COOKIE):
        assert secret.encode() not in everything, secret
    assert "cookies" not in event.get("request", {})


async def test_client_errors_are_not_reported(sentry_app, receiver, world):
    async with client_for(sentry_app) as client:
        assert (await client.get("/api/v1/nothing-here")).status_code == 404
        assert (await client.get("/api/v1/auth/me")).status_code == 401
        r = await client.get(f"/api/v1/users/{world.outsider.id}", headers=world.auth(world.member))
        assert r.status_code == 404
    sentry_sdk.flush(timeout=10)
    assert events_of(receiver) == []


def test_scrubbing_reaches_every_corner_of_an_event():
    event = {
        "request": {
            "headers": [["Authorization", "Bearer abc.def.ghi"], ["X-Request-ID", "r1"]],
            "cookies": {"session": COOKIE},
            "query_string": f"q=x&email={EMAIL}",
            "data": {"new_password": PASSWORD, "nested": {"note": f"mail {EMAIL}"}},
        },
        "user": {"id": "7", "email": EMAIL, "ip_address": "10.0.0.1"},
        "extra": {"token": "t0ken", "message": "Bearer eyJhbGciOi.eyJzdWIi.c2ln"},
    }
    text = json.dumps(scrub_event(event))
    for secret in (COOKIE, EMAIL, PASSWORD, "abc.def.ghi", "t0ken", "eyJhbGciOi", "10.0.0.1"):
        assert secret not in text, secret
    assert '"r1"' in text
