"""An unreachable database is a 503 `database-unavailable` problem with `Retry-After`, never a
500; an unreachable read replica is no error at all (reads use the primary); and what
DB_PGBOUNCER sets. The outages under real traffic are in tests/faults (`make test-faults`).
"""

from __future__ import annotations

from typing import Any

from common.problems import DATABASE_RETRY_AFTER, PROBLEM_MEDIA_TYPE
from common.security import create_access_token
from settings.database import engine_options
from tests.conftest import make_settings
from tests.integration.database.test_pool_limits import NO_SUCH_USER, running_app
from tests.servers import free_port


def closed_port_url() -> str:
    """A PostgreSQL URL where nothing listens: every connection attempt is refused."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/etter"


def auth_headers(app: Any) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {create_access_token(app.state.settings, NO_SUCH_USER).token}"
    }


async def test_a_refused_database_connection_is_503_database_unavailable() -> None:
    async with running_app(closed_port_url()) as (app, client):
        response = await client.get("/api/v1/auth/me", headers=auth_headers(app))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER)
    body = response.json()
    assert body["type"] == "urn:etter:problem:database-unavailable"
    assert "refused" not in response.text.lower()  # nothing of the driver's error leaks


async def test_without_redis_a_replica_setup_reads_from_the_primary(
    migrated_postgres: str,
) -> None:
    async with running_app(
        migrated_postgres, database_replica_url=closed_port_url(), redis_url=None
    ) as (app, client):
        assert app.state.database.replica_sessionmaker is not None
        # Without Redis no caller's writes can be tracked: reads stay on the primary.
        response = await client.get("/api/v1/auth/me", headers=auth_headers(app))
        assert response.status_code == 401, response.text  # the primary answered the query


async def test_replica_connections_fall_back_to_the_primary(migrated_postgres: str) -> None:
    async with running_app(migrated_postgres, database_replica_url=closed_port_url()) as (app, _):
        replica = app.state.database.replica_engine
        async with replica.connect() as connection:
            port = (await connection.exec_driver_sql("SELECT inet_server_port()")).scalar()
        assert str(port) in migrated_postgres


def test_pgbouncer_turns_off_every_statement_cache() -> None:
    plain = engine_options(make_settings(database_url="postgresql://h/db"))["connect_args"]
    bounced = engine_options(make_settings(database_url="postgresql://h/db", db_pgbouncer=True))[
        "connect_args"
    ]
    assert plain["prepared_statement_cache_size"] == 100
    assert "statement_timeout" in plain["server_settings"]
    assert bounced["prepared_statement_cache_size"] == 0
    assert bounced["statement_cache_size"] == 0
    names = {bounced["prepared_statement_name_func"]() for _ in range(3)}
    assert len(names) == 3
    # PgBouncer refuses it as a startup parameter; it belongs on the role there.
    assert "statement_timeout" not in bounced["server_settings"]


def test_replica_url_takes_the_async_driver() -> None:
    settings = make_settings(database_replica_url="postgres://replica/etter")
    assert settings.database_replica_url == "postgresql+asyncpg://replica/etter"
    assert make_settings().database_replica_url is None
