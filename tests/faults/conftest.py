"""Fixtures of the fault tests (`make test-faults`): servers of their own, which the tests stop,
kill and restart, and a World committed into the database for real processes to serve.

These tests are not part of `make test` (pyproject's `norecursedirs`): each scenario runs real
processes for several seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.factories import World
from tests.fixtures.processes import seeded_database
from tests.servers import PostgresServer, RedisServer


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        server.psql("CREATE DATABASE etter")
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
async def world(pg: PostgresServer) -> World:
    return await seeded_database(pg.url)


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
