"""Every error leaves as application/problem+json carrying the request id, and the log event
of the same request carries the same id."""

from __future__ import annotations

import pytest

from common.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EtterError,
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from tests.fixtures.apps import add_test_route, client_for, running_app
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem

NOT_FOUND = "urn:etter:problem:not-found"


def access_event(logs, request_id: str) -> dict:
    matching = [e for e in logs.named("request") if e["request_id"] == request_id]
    assert len(matching) == 1, logs.text
    return matching[0]


@pytest.mark.embedded
async def test_404_422_429_500_are_problems_whose_log_events_carry_the_same_id(
    settings, connection
):
    async def boom() -> None:
        raise RuntimeError("internal detail that must stay inside: /srv/etter/secret.cfg")

    async with running_app(settings, connection, rate_limit_anonymous="2/minute") as app:
        add_test_route(app, "/test-only/boom", boom)
        async with client_for(app) as client:
            with captured_logs("INFO") as logs:
                not_found = await client.get("/api/v1/no-such-thing")
                invalid = await client.post("/api/v1/auth/token", data={"username": "a@b.example"})
                crashed = await client.get("/test-only/boom")
                limited = await client.get("/api/v1/no-such-thing")

    body = assert_problem(not_found, 404)
    assert body["type"] == NOT_FOUND
    assert body["instance"] == "/api/v1/no-such-thing"

    body = assert_problem(invalid, 422)
    assert body["type"] == "urn:etter:problem:validation-error"
    assert {"field": "body.password", "message": "Field required"} in body["errors"]

    body = assert_problem(crashed, 500)
    assert body["type"] == "urn:etter:problem:internal-error"
    assert "secret" not in crashed.text
    assert "RuntimeError" not in crashed.text

    body = assert_problem(limited, 429)
    assert body["type"] == "urn:etter:problem:rate-limited"
    assert int(limited.headers["retry-after"]) >= 1

    for response in (not_found, invalid, crashed, limited):
        event = access_event(logs, response.headers["x-request-id"])
        assert event["status"] == response.status_code
    # The 500 is logged once more, with its stack, under the same id.
    [crash] = logs.named("unhandled_error")
    assert crash["request_id"] == crashed.headers["x-request-id"]
    assert crash["level"] == "error"
    assert "RuntimeError: internal detail" in crash["exception"]
    assert "Traceback" in crash["exception"]


async def test_an_incoming_request_id_is_the_one_in_the_problem(client):
    response = await client.get("/api/v1/nowhere", headers={"X-Request-ID": "client-id-1234"})
    assert assert_problem(response, 404)["request_id"] == "client-id-1234"


@pytest.mark.embedded
async def test_a_service_not_found_is_the_same_404_problem(client, world):
    response = await client.get("/api/v1/users/2147483647", headers=world.auth(world.member))
    assert assert_problem(response, 404)["type"] == NOT_FOUND


async def test_authentication_problem_keeps_its_challenge(client):
    response = await client.get("/api/v1/auth/me")
    body = assert_problem(response, 401)
    assert body["type"] == "urn:etter:problem:unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_method_not_allowed_keeps_its_allow_header(client):
    response = await client.put("/health/live")
    body = assert_problem(response, 405)
    assert body["type"] == "about:blank"
    assert body["title"] == "Method Not Allowed"
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (BadRequestError("bad"), 400, "bad-request"),
        (AuthenticationError(), 401, "unauthenticated"),
        (PermissionDeniedError(), 403, "forbidden"),
        (NotFoundError("no such workflow"), 404, "not-found"),
        (ConflictError("name taken"), 409, "conflict"),
        (PayloadTooLargeError(), 413, "payload-too-large"),
        (UnsupportedMediaTypeError(), 415, "unsupported-media-type"),
        (ValidationFailedError(errors=[FieldError("steps", "empty")]), 422, "validation-error"),
        (RateLimitedError(7), 429, "rate-limited"),
        (ServiceUnavailableError("busy", retry_after=3), 503, "service-unavailable"),
        (EtterError(), 500, "internal-error"),
    ],
)
@pytest.mark.own_app
async def test_each_error_a_service_raises_has_its_status_and_type(
    app, client, error, status, slug
):
    async def raising() -> None:
        raise error

    add_test_route(app, "/test-only/raise", raising)
    response = await client.get("/test-only/raise")
    body = assert_problem(response, status)
    assert body["type"] == f"urn:etter:problem:{slug}"
    assert body["detail"] == error.detail
    for name, value in error.headers.items():
        assert response.headers[name] == value
    if error.errors:
        assert body["errors"] == [{"field": e.field, "message": e.message} for e in error.errors]
