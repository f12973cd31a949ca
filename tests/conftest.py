"""Test fixtures: one PostgreSQL and one Redis server per run, one rolled-back transaction per test.

- The servers are started from the local binaries (tests/servers.py) unless `TEST_DATABASE_URL`
  / `TEST_REDIS_URL` name existing ones. The schema is built by `alembic upgrade head`, so the
  migrations are tested on every run.
- Each test runs inside a connection-level transaction that is rolled back at the end; the app's
  sessions join it through SAVEPOINTs, so a request's commit is real to the app and invisible to
  the next test. Redis is flushed before each test.
- `ETTER_TEST_BACKEND=sqlite` runs the tests marked `embedded` on the embedded default instead:
  a fresh SQLite file per test (copied from one migrated template) and no Redis.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from alembic import command
from settings.config import Environment, Settings
from settings.database import create_engine
from settings.server import create_app
from tests import servers
from tests.fixtures.apps import fresh_state, running_app
from tests.fixtures.factories import World, build_world

ROOT = Path(__file__).resolve().parent.parent
BACKEND = os.environ.get("ETTER_TEST_BACKEND", "postgresql")
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND == "sqlite":
        skip = pytest.mark.skip(reason="needs PostgreSQL/Redis; not part of the embedded run")
        for item in items:
            if "embedded" not in item.keywords:
                item.add_marker(skip)
    schedule_longest_first(items)


def schedule_longest_first(items: list[pytest.Item]) -> None:
    """Modules marked `long_running` first, then the others by their number of tests. `make
    test` hands modules out in this order (`--dist loadfile --no-loadscope-reorder`), so the
    workers finish together instead of one running a long module alone at the end (xdist's own
    order, by number of tests, put the one-test schemathesis module last)."""
    tests_per_module = Counter(item.path for item in items)
    items.sort(
        key=lambda item: (
            item.get_closest_marker("long_running") is None,
            -tests_per_module[item.path],
        )
    )


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    # Alembic's env.py runs its own event loop; a worker thread keeps it off the test loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(database_url), revision).result()


# --- servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if BACKEND == "sqlite":
        pytest.skip("PostgreSQL is not used in the embedded run")
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    with servers.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer | None]:
    """The run's Redis server; None when TEST_REDIS_URL names an external one."""
    if BACKEND == "sqlite" or os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    with servers.redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: servers.RedisServer | None) -> str | None:
    if BACKEND == "sqlite":
        return None
    return os.environ.get("TEST_REDIS_URL") or (redis_server.url if redis_server else None)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    url = Settings(database_url=postgres_url).database_url
    migrate(url)
    return url


# --- settings, engine, app -------------------------------------------------------------------


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "secret_key": TEST_SECRET,
        "log_level": "WARNING",
        "seed_demo_data": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


if BACKEND == "sqlite":

    @pytest.fixture
    def database_url(sqlite_template: Path, tmp_path: Path) -> str:
        path = tmp_path / "etter.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"

    @pytest.fixture
    def connection() -> None:
        """No outer transaction on SQLite: each test has a file of its own."""
        return None

else:

    @pytest.fixture
    def database_url(migrated_postgres: str) -> str:
        return migrated_postgres

    @pytest.fixture
    async def connection(pg_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """The test's outer transaction, rolled back at the end."""
        async with pg_engine.connect() as conn:
            transaction = await conn.begin()
            yield conn
            if transaction.is_active:
                await transaction.rollback()


@functools.cache
def servers_settings(database_url: str, redis_url: str | None) -> Settings:
    """Settings for these servers, built once: pydantic-settings reads and validates the whole
    environment on each build, a sixth of a short test's time under coverage."""
    return make_settings(database_url=database_url, redis_url=redis_url)


@pytest.fixture
def settings(database_url: str, redis_url: str | None, tmp_path: Path) -> Settings:
    # Only the storage directory is the test's own (a Path, so a copy needs no validation).
    return servers_settings(database_url, redis_url).model_copy(
        update={"storage_dir": tmp_path / "storage"}
    )


@pytest.fixture(scope="session")
async def pg_engine(migrated_postgres: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url=migrated_postgres))
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis(redis_url: str | None) -> AsyncIterator[Redis | None]:
    if redis_url is None:
        yield None
        return
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


def isolated_sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    # The app's commits become SAVEPOINT releases inside the test's outer transaction.
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture(scope="session")
def shared_settings(
    request: pytest.FixtureRequest,
    redis_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """The shared app's settings; each test's differ only in its storage directory and, on
    SQLite, its database file."""
    directory = tmp_path_factory.mktemp("shared")
    if BACKEND == "sqlite":
        database_url = f"sqlite+aiosqlite:///{directory / 'unused.db'}"  # each test has its own
    else:
        database_url = request.getfixturevalue("migrated_postgres")
    return make_settings(
        database_url=database_url, redis_url=redis_url, storage_dir=directory / "storage"
    )


@pytest.fixture(scope="session")
async def shared_app(shared_settings: Settings) -> AsyncIterator[FastAPI]:
    """One app per worker, built and started once: a new app pays FastAPI's route analysis
    again on its first request (most of a short test's time). The `app` fixture gives each test
    its own state on it (tests/fixtures/apps.py `fresh_state`)."""
    application = create_app(shared_settings)
    application.state.shared = True
    async with LifespanManager(application):
        yield application


@pytest.fixture
def app(request: pytest.FixtureRequest) -> FastAPI:
    """The app under test, on the test's data: the worker's shared app with the test's own
    database (connection or file), settings, cache, rate-limit counters and middleware; tests
    marked `own_app` (they add routes) get an app of their own."""
    if request.node.get_closest_marker("own_app"):
        return request.getfixturevalue("own_app")
    return request.getfixturevalue("shared_app_for_test")


@pytest.fixture
async def own_app(
    settings: Settings, connection: AsyncConnection | None, redis: Redis | None
) -> AsyncIterator[FastAPI]:
    async with running_app(settings, connection) as application:
        yield application


@pytest.fixture
async def shared_app_for_test(
    shared_app: FastAPI, settings: Settings, connection: AsyncConnection | None, redis: Redis | None
) -> AsyncIterator[FastAPI]:
    async with fresh_state(shared_app, settings, connection) as application:
        yield application


@pytest.fixture
async def db(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A session on the same data the app sees (same outer transaction, or same file)."""
    async with app.state.database.sessionmaker() as session:
        yield session


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    """Two tenants with a user of every role, and the platform admin; committed for the app."""
    built = await build_world(db, settings)
    await db.commit()
    return built


@pytest.fixture
def count_statements(app: FastAPI) -> Any:
    """`with count_statements() as counter: ...` counts the SQL statements the app sends
    (tests/query_counter.py); `counter.count` leaves out transaction control."""
    # Imported here, not at the top: tests/query_counter.py imports this module.
    from tests.fixtures.query_counter import count_statements as count_app_statements

    return lambda: count_app_statements(app)
