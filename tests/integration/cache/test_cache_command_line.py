"""What manage.py writes, the API serves at once: the tool invalidates the shared cache (Redis)
after its commit, as a request does, instead of leaving the API's entries to their TTL.

The tool is a real process on a database of its own (it commits) and the suite's Redis; the
API is an app on the same two.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.cache_service import CacheName
from settings.server import create_app
from tests.conftest import make_settings
from tests.fixtures.apps import client_for
from tests.fixtures.cache import CacheCounts
from tests.fixtures.manage_tool import finish, start
from tests.fixtures.scratch_database import scratch_database

pytestmark = pytest.mark.long_running

COMPANY = "Umbrella Corp"
PASSWORD = "umbrella-secret-password"
AUTOCOMPLETE = "/api/v1/users/autocomplete"


async def manage(database_url: str, redis_url: str, *args: str, **env: str) -> None:
    process = start(*args, DATABASE_URL=database_url, REDIS_URL=redis_url, **env)
    result = await asyncio.to_thread(finish, process)
    assert result.returncode == 0, result.stderr


async def create_user(database_url: str, redis_url: str, email: str, role: str) -> None:
    await manage(
        database_url, redis_url, "create-user", "--email", email, "--password", PASSWORD,
        "--company-name", COMPANY, "--role", role,
    )  # fmt: skip


@asynccontextmanager
async def umbrella_chro_client(
    database_url: str, redis_url: str, storage: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """Umbrella's CHRO, created by the tool, signed in to an API on the same database."""
    await create_user(database_url, redis_url, "chro@umbrella.example", "chro")
    settings = make_settings(database_url=database_url, redis_url=redis_url, storage_dir=storage)
    app = create_app(settings)
    async with LifespanManager(app), client_for(app) as client:
        login = await client.post(
            "/api/v1/auth/token", data={"username": "chro@umbrella.example", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        yield client, {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_a_user_the_tool_creates_is_in_the_next_autocomplete(
    migrated_postgres, redis_url, redis, tmp_path
):
    async with (
        scratch_database(migrated_postgres) as database_url,
        umbrella_chro_client(database_url, redis_url, tmp_path / "storage") as (client, headers),
    ):
        before = await client.get(AUTOCOMPLETE, params={"q": "ot"}, headers=headers)
        assert before.json() == []  # and cached for CACHE_TTL_AUTOCOMPLETE (60 s)

        await create_user(database_url, redis_url, "otto@umbrella.example", "member")

        after = await client.get(AUTOCOMPLETE, params={"q": "ot"}, headers=headers)
        assert [s["email"] for s in after.json()] == ["otto@umbrella.example"]


async def test_a_seed_that_loads_data_drops_every_cached_entry(
    migrated_postgres, redis_url, redis, tmp_path
):
    storage = tmp_path / "storage"
    async with (
        scratch_database(migrated_postgres) as database_url,
        umbrella_chro_client(database_url, redis_url, storage) as (client, headers),
    ):
        params = {"q": "ch"}
        expected = (await client.get(AUTOCOMPLETE, params=params, headers=headers)).json()
        start = CacheCounts.of(CacheName.AUTOCOMPLETE)
        assert (await client.get(AUTOCOMPLETE, params=params, headers=headers)).json() == expected
        assert (CacheCounts.of(CacheName.AUTOCOMPLETE) - start).hits == 1

        await manage(database_url, redis_url, "seed", "--scale", "demo", STORAGE_DIR=str(storage))

        start = CacheCounts.of(CacheName.AUTOCOMPLETE)
        assert (await client.get(AUTOCOMPLETE, params=params, headers=headers)).json() == expected
        assert (CacheCounts.of(CacheName.AUTOCOMPLETE) - start).misses == 1
