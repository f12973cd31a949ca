"""A database of its own on the suite's PostgreSQL server, for tests that must commit.

The bulk loader commits, VACUUMs and ANALYZEs (none of which a rolled-back test transaction
allows), and the planner's statistics of the shared test database must not be skewed by a
million rows that a rollback then removes. Such tests get a fresh database, migrated by
Alembic like the shared one, and dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url


def _plain(url: str) -> str:
    """asyncpg's own URL form (no `+asyncpg` driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(server_url: str, revision: str = "head") -> AsyncIterator[str]:
    """Create a database next to `server_url`'s, migrate it to `revision`, yield its async
    URL, drop it. Skips the test when the account may not create databases."""
    from tests.conftest import migrate  # conftest imports the app; not at import time

    name = f"etter_scratch_{os.getpid()}_{secrets.token_hex(4)}"
    server = make_url(_plain(server_url))
    maintenance = await asyncpg.connect(
        server.set(database="postgres").render_as_string(hide_password=False)
    )
    try:
        try:
            await maintenance.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the test database account may not create databases")
        url = server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
        try:
            migrate(url, revision)
            yield url
        finally:
            await maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await maintenance.close()
