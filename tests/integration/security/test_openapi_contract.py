"""The OpenAPI document tells the truth: schemathesis drives every operation of the live app
(real uvicorn, on a PostgreSQL database of its own and the suite's Redis) with positive and
negative data, and every answer must be no server error, of a documented status, of the
documented media type and of the documented schema.

Rate limits are raised so that the fuzzer is not simply refused, and the requests carry a CHRO's
token, so that the operations are reached past authentication. `POST /auth/logout-all` revokes
that token, so it runs alone, after everything else.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from common.security import create_access_token
from settings.config import Settings
from settings.database import create_engine, create_sessionmaker
from settings.server import create_app
from tests.conftest import make_settings, migrate
from tests.fixtures.factories import World, build_world
from tests.servers import free_port

# Seconds of a schemathesis run against a live server: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.long_running

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)

# Per operation in the fuzzing phase (the coverage phase adds its own boundary and negative
# cases, about 50 per operation): the whole run is about 70 s on the project's 2-core machine
# (1,750 requests, 34 operations).
MAX_EXAMPLES = "5"
LOGOUT_ALL = "/api/v1/auth/logout-all"
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture
async def contract_database(migrated_postgres: str) -> AsyncIterator[str]:
    """A database of its own: what the fuzzer writes is committed for real."""
    name = f"etter_contract_{uuid.uuid4().hex[:12]}"
    server = make_url(migrated_postgres)
    admin = create_async_engine(
        server.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrate, url)
        yield url
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
def contract_settings(contract_database: str, redis_url: str | None, tmp_path: Path) -> Settings:
    unlimited = "100000/minute"
    return make_settings(
        database_url=contract_database,
        redis_url=redis_url,
        storage_dir=tmp_path / "storage",
        rate_limit_login=unlimited,
        rate_limit_login_account=unlimited,
        rate_limit_read=unlimited,
        rate_limit_write=unlimited,
        rate_limit_anonymous=unlimited,
    )


@pytest.fixture
async def contract_world(contract_settings: Settings) -> World:
    engine = create_engine(contract_settings)
    try:
        async with create_sessionmaker(engine)() as session:
            world = await build_world(session, contract_settings)
            await session.commit()
    finally:
        await engine.dispose()
    return world


@pytest.fixture
def live_server(contract_settings: Settings, contract_world: World) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(contract_settings),
        host="127.0.0.1",
        port=port,
        # uvicorn leaves logging alone (the app configures it): its log_level would set the
        # level of the process-wide uvicorn loggers for the tests that follow on this worker.
        log_config=None,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def schemathesis(
    base_url: str, token: str, workdir: Path, *selection: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            CHECKS,
            "--mode",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "10",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
            "--header",
            f"Authorization: Bearer {token}",
            *selection,
        ],
        capture_output=True,
        text=True,
        cwd=workdir,  # its cache (.schemathesis/) stays out of the checkout
        timeout=600,
        check=False,
    )


def test_every_operation_keeps_to_the_document(
    live_server, contract_world, contract_settings, tmp_path
):
    chro = contract_world.chro
    token = create_access_token(contract_settings, chro.id, chro.credentials_version).token
    runs = [
        schemathesis(live_server, token, tmp_path, "--exclude-path", LOGOUT_ALL),
        schemathesis(live_server, token, tmp_path, "--include-path", LOGOUT_ALL),
    ]
    for run in runs:
        report = run.stdout + run.stderr
        assert run.returncode == 0, report
        assert "Tested: " in report, report  # it ran operations, not just loaded the document
