"""Helpers for the tests of the edges: apps with overridden settings, log capture, problems."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from common.problems import PROBLEM_MEDIA_TYPE
from common.structured_logger import configure_logging
from settings.config import Settings
from settings.server import create_app


def override(settings: Settings, **changes: Any) -> Settings:
    """The test's settings with some changed, validated like settings from the environment."""
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})  # type: ignore[call-arg]


@asynccontextmanager
async def running_app(
    settings: Settings, connection: AsyncConnection | None, **changes: Any
) -> AsyncIterator[FastAPI]:
    """An app of its own (started and stopped), on the test's database transaction."""
    from tests.conftest import isolated_sessionmaker

    app = create_app(override(settings, **changes) if changes else settings)
    async with LifespanManager(app):
        if connection is not None:
            app.state.database.sessionmaker = isolated_sessionmaker(connection)
        yield app


def client_for(app: FastAPI, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class LogCapture:
    """What the app logged, as the configured handler rendered it."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]


@contextmanager
def captured_logs(level: str = "DEBUG", json_logs: bool = True) -> Iterator[LogCapture]:
    """Logging configured as the app configures it, but into a buffer; reset afterwards.

    Enter it once the app has started: the app's start-up configures logging itself (to
    stderr), and this re-configures the same pipeline into the buffer.
    """
    stream = io.StringIO()
    configure_logging(level, json_logs, stream=stream)
    try:
        yield LogCapture(stream)
    finally:
        configure_logging("WARNING", False)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= body.keys()
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def add_test_route(
    app: FastAPI, path: str, endpoint: Any, methods: tuple[str, ...] = ("GET",)
) -> None:
    """A route that exists only in this test's app, handled like the real ones."""
    from common.transactions import TransactionalRoute

    app.router.add_api_route(
        path, endpoint, methods=list(methods), route_class_override=TransactionalRoute
    )
