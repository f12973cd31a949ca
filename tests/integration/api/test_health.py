"""Liveness and readiness probes, with the database and Redis up and down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from settings.server import create_app
from tests.conftest import BACKEND, make_settings
from tests.servers import free_port

pytestmark = pytest.mark.embedded


@asynccontextmanager
async def client_for(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_live(client):
    r = await client.get("/health/live")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


async def test_ready_when_everything_answers(client):
    r = await client.get("/health/ready")
    assert r.status_code == 200, r.text
    expected_redis = "not configured" if BACKEND == "sqlite" else "ok"
    assert r.json() == {"status": "ready", "database": "ok", "redis": expected_redis}


async def test_probes_need_no_token(client):
    for path in ("/health/live", "/health/ready"):
        r = await client.get(path, headers={"Authorization": "Bearer garbage"})
        assert r.status_code == 200, path


@pytest.mark.skipif(BACKEND == "sqlite", reason="the embedded run has no Redis")
async def test_not_ready_when_redis_is_unreachable(settings):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    broken = make_settings(database_url=settings.database_url, redis_url=closed)
    async with client_for(broken) as client:
        r = await client.get("/health/ready")
        assert r.status_code == 503, r.text
        assert r.json() == {"status": "unavailable", "database": "ok", "redis": "down"}
        # Liveness is about the process, not its dependencies.
        assert (await client.get("/health/live")).status_code == 200


async def test_not_ready_when_the_database_is_unreachable(settings, tmp_path: Path):
    if settings.is_sqlite:  # a file in a directory that does not exist cannot be opened
        unreachable = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'etter.db'}"
    else:
        url = make_url(settings.database_url).set(host="127.0.0.1", port=free_port())
        unreachable = url.render_as_string(hide_password=False)
    broken = make_settings(database_url=unreachable, redis_url=settings.redis_url)
    async with client_for(broken) as client:
        r = await client.get("/health/ready")
        assert r.status_code == 503, r.text
        assert r.json()["status"] == "unavailable"
        assert r.json()["database"] == "down"
        assert (await client.get("/health/live")).status_code == 200
