"""structlog configured once: JSON or console lines, the standard-library loggers in the same
pipeline, slow queries logged, and no secret ever in the output."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from fastapi import Request
from sqlalchemy import text

from common.structured_logger import configure_logging
from settings.config import Environment, Settings
from tests.fixtures.apps import add_test_route, client_for, running_app
from tests.fixtures.factories import PASSWORD
from tests.fixtures.logs import captured_logs

PRODUCTION_SECRET = "a-production-secret-that-is-long-enough-0123456789"


def test_json_in_production_and_readable_lines_in_development():
    production = Settings(
        _env_file=None, environment=Environment.PRODUCTION, secret_key=PRODUCTION_SECRET
    )
    assert production.json_logs is True
    assert Settings(_env_file=None).json_logs is False
    assert Settings(_env_file=None, log_json=True).json_logs is True

    as_json, as_text = io.StringIO(), io.StringIO()
    try:
        configure_logging("INFO", True, stream=as_json)
        structlog.get_logger("etter.demo").info("order_shipped", order=42)
        configure_logging("INFO", False, stream=as_text)
        structlog.get_logger("etter.demo").info("order_shipped", order=42)
    finally:
        configure_logging("WARNING", False)
    event = json.loads(as_json.getvalue())
    assert event["event"] == "order_shipped"
    assert event["order"] == 42
    assert event["level"] == "info"
    assert event["logger"] == "etter.demo"
    assert event["timestamp"].endswith("Z")
    line = as_text.getvalue()
    assert "order_shipped" in line
    assert "order=42" in line
    assert "etter.demo" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_standard_library_loggers_go_through_the_same_pipeline():
    with captured_logs("INFO") as logs:
        structlog.get_logger("etter.demo").info("from_structlog")
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 4242)
        logging.getLogger("sqlalchemy.engine.Engine").warning("pool overflow")
        logging.getLogger("etter.jobs").error("job %s failed", "nightly")
        logging.getLogger("uvicorn.access").info("GET / 200")  # replaced by our access log
        logging.getLogger("etter.jobs").debug("below the level")
    events = logs.events()
    assert [e["event"] for e in events] == [
        "from_structlog",
        "Started server process [4242]",
        "pool overflow",
        "job nightly failed",
    ]
    for event in events:
        assert {"event", "level", "logger", "timestamp"} <= event.keys()
    assert [e["logger"] for e in events] == [
        "etter.demo",
        "uvicorn.error",
        "sqlalchemy.engine.Engine",
        "etter.jobs",
    ]


@pytest.mark.own_app
async def test_passwords_tokens_and_cookies_never_reach_the_log(app, client, world):
    token = world.auth(world.member)["Authorization"].removeprefix("Bearer ")
    cookie = "session-cookie-value-7f3a9c"
    wrong_password = "Tr0ub4dor&3-wrong"

    async def echo(request: Request) -> dict[str, bool]:
        # A careless handler: logs everything it was sent, through both kinds of logger.
        structlog.get_logger("etter.careless").debug(
            "incoming",
            headers=dict(request.headers),
            cookies=request.cookies,
            note=f"caller sent Authorization: Bearer {token}",
        )
        logging.getLogger("thirdparty.client").warning(
            "retrying with headers Authorization: Bearer %s and token %s", token, token
        )
        return {"ok": True}

    add_test_route(app, "/test-only/echo", echo)
    with captured_logs("DEBUG") as logs:
        logged_in = await client.post(
            "/api/v1/auth/token", data={"username": world.member.email, "password": PASSWORD}
        )
        refused = await client.post(
            "/api/v1/auth/token", data={"username": world.member.email, "password": wrong_password}
        )
        invalid = await client.post("/api/v1/auth/token", data={"password": wrong_password})
        echoed = await client.get(
            "/test-only/echo",
            headers={"Authorization": f"Bearer {token}", "Cookie": f"session={cookie}"},
        )
    assert (logged_in.status_code, refused.status_code, invalid.status_code) == (200, 401, 422)
    assert echoed.status_code == 200
    issued = logged_in.json()["access_token"]
    output = logs.text
    assert logs.named("incoming"), output  # the careless events were logged...
    for secret in (PASSWORD, wrong_password, token, issued, cookie):
        assert secret not in output  # ...without a single secret in them
    assert "[redacted]" in output


async def test_slow_queries_are_logged_with_the_request_but_without_parameters(
    settings, connection
):
    async def slow(request: Request) -> dict[str, bool]:
        async with request.app.state.database.engine.connect() as db:
            await db.execute(
                text("SELECT pg_sleep(:delay), CAST(:marker AS text)"),
                {"delay": 0.05, "marker": "param-value-4711"},
            )
        return {"ok": True}

    async with running_app(settings, connection, db_slow_query_ms=20) as app:
        add_test_route(app, "/test-only/slow", slow)
        async with client_for(app) as client:
            with captured_logs("INFO") as logs:
                response = await client.get("/test-only/slow")
    assert response.status_code == 200
    slow_queries = [e for e in logs.named("slow_query") if "pg_sleep" in e["statement"]]
    assert len(slow_queries) == 1, logs.text
    [event] = slow_queries
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["duration_ms"] >= 20
    assert event["threshold_ms"] == 20
    assert event["logger"] == "etter.db"
    assert "param-value-4711" not in logs.text
