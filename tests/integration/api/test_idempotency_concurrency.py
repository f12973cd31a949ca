"""50 concurrent retries of one create, each with the same Idempotency-Key: exactly one row.

On a database of its own (tests/scratch_database.py) with the app's real pool, so that the 50
requests really run at once on 20 connections and really commit, which the suite's one
rolled-back connection per test cannot show.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from models import Simulation
from settings.server import create_app
from tests.conftest import make_settings
from tests.fixtures.apps import client_for
from tests.fixtures.factories import build_world
from tests.fixtures.scratch_database import scratch_database

RETRIES = 50


async def test_fifty_concurrent_retries_of_one_create_make_one_row(
    postgres_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    if redis_url is None:
        pytest.skip("needs the suite's Redis")
    async with scratch_database(postgres_url) as url:
        settings = make_settings(
            database_url=url,
            redis_url=redis_url,
            storage_dir=tmp_path / "storage",
            db_pool_size=20,
            db_max_overflow=0,
            db_pool_timeout=60,  # a busy test machine must not turn waiting into 503s
            redis_socket_timeout=10,
            rate_limit_enabled=False,  # the shared Redis's counters belong to other tests
        )
        application = create_app(settings)
        async with LifespanManager(application):
            sessionmaker = application.state.database.sessionmaker
            async with sessionmaker() as session:
                world = await build_world(session, settings)
                await session.commit()
            headers = {**world.auth(world.chro), "Idempotency-Key": str(uuid.uuid4())}
            # Simulations have no unique column: without the key, 50 posts would be 50 rows.
            body = {
                "name": "Quarter close",
                "parameters": {
                    "adoption_rate": 0.5,
                    "horizon_months": 12,
                    "ramp_months": 3,
                    "hourly_cost": 60,
                },
            }
            async with client_for(application) as client:
                responses = await asyncio.gather(
                    *(
                        client.post("/api/v1/simulations", json=body, headers=headers)
                        for _ in range(RETRIES)
                    )
                )
            async with sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(func.count())
                        .select_from(Simulation)
                        .where(Simulation.name == "Quarter close")
                    )
                ).scalar_one()

    assert rows == 1
    outcomes = [(r.status_code, r.headers.get("idempotent-replayed")) for r in responses]
    assert outcomes.count((201, None)) == 1, outcomes
    assert set(outcomes) <= {(201, None), (201, "true"), (409, None)}, outcomes
    created = [r.json() for r in responses if r.status_code == 201]
    assert all(c == created[0] for c in created)
