"""The bulk loader (seeding/bulk.py and `manage.py seed --scale medium|large`), at a
tiny scale: consistent rows, deterministic, idempotent, index-only-scan ready, PostgreSQL only.

The loader commits (and VACUUMs), so the PostgreSQL tests run in a scratch database of their
own rather than in the suite's rolled-back transaction.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from typer.testing import CliRunner

import manage
from seeding import bulk as bulk_seeding
from seeding.bulk import (
    BULK_SIZES,
    INTEGRATION_ACCOUNT,
    MARKER_COMPANY,
    BulkSeedError,
    BulkSizes,
    build_plan,
    bulk_seed,
    document_chunk,
    history_chunk,
    simulation_rows,
    vacuum_analyze,
)
from tests.fixtures.scratch_database import scratch_database

# Seconds of bulk loads into scratch databases: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.long_running

TINY = BulkSizes(
    companies=4,
    users=120,
    workflows=24,
    history=6_000,
    documents=2_500,
    simulations=30,
    integration_runs=1_500,
)

NOW = datetime(2026, 6, 15, 13, 45, tzinfo=UTC)
ANCHOR = datetime(2026, 6, 15, tzinfo=UTC)  # the load day, midnight UTC
TABLES = ["companies", "users", "workflows", "user_workflow_history", "documents", "simulations"]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 1,000 rows: several per table, and a partial last one."""
    monkeypatch.setattr(bulk_seeding, "CHUNK_ROWS", 1_000)


@pytest.fixture
async def scratch_url(postgres_url: str) -> AsyncIterator[str]:
    async with scratch_database(postgres_url) as url:
        yield url


@pytest.fixture
async def scratch_engine(scratch_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(scratch_url)
    yield engine
    await engine.dispose()


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table: await conn.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
            for table in TABLES
        }


async def _scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql))


async def test_loads_a_consistent_data_set_after_existing_rows(
    scratch_engine: AsyncEngine, small_chunks: None
) -> None:
    engine = scratch_engine
    async with engine.begin() as conn:  # data that was there before: ids must not collide
        existing = await conn.scalar(
            text(
                "INSERT INTO companies (name, slug, country) VALUES ('Existing', 'existing', 'US') "
                "RETURNING id"
            )
        )
    progress: list[int] = []
    async with engine.begin() as conn:
        report = await bulk_seed(conn, TINY, now=NOW, progress=progress.append)
    assert report.loaded
    assert sum(progress) == TINY.total_rows
    assert report.counts["workflow runs"] == TINY.history

    counts = await _counts(engine)
    assert counts == {
        "companies": TINY.companies + 1,
        "users": TINY.users,
        "workflows": TINY.workflows,
        "user_workflow_history": TINY.history,
        "documents": TINY.documents,
        "simulations": TINY.simulations,
    }
    async with engine.connect() as conn:
        first_bulk = (
            await conn.execute(
                text("SELECT id, name FROM companies WHERE id <> :id ORDER BY id LIMIT 1"),
                {"id": existing},
            )
        ).one()
    assert tuple(first_bulk) == (existing + 1, MARKER_COMPANY)

    # The denormalised tenant of every run is its user's and its workflow's company.
    assert (
        await _scalar(
            engine,
            "SELECT count(*) FROM user_workflow_history h JOIN users u ON u.id = h.user_id "
            "JOIN workflows w ON w.id = h.workflow_id "
            "WHERE h.company_id <> u.company_id OR h.company_id <> w.company_id",
        )
        == 0
    )
    assert (
        await _scalar(
            engine,
            "SELECT count(*) FROM user_workflow_history h JOIN workflows w "
            "ON w.id = h.workflow_id WHERE w.status = 'draft'",
        )
        == 0
    )
    assert (
        await _scalar(
            engine,
            "SELECT count(*) FROM documents d JOIN users u ON u.id = d.uploaded_by "
            "WHERE d.tenant_id <> u.company_id",
        )
        == 0
    )

    # Every run lies in the 365 days before the load day; mostly completed, consistent times.
    async with engine.connect() as conn:
        first, last = (
            await conn.execute(
                text("SELECT min(started_at), max(started_at) FROM user_workflow_history")
            )
        ).one()
        statuses = dict(
            (
                await conn.execute(
                    text("SELECT status, count(*) FROM user_workflow_history GROUP BY status")
                )
            ).all()
        )
        inconsistent = await conn.scalar(
            text(
                "SELECT count(*) FROM user_workflow_history WHERE "
                "(status = 'completed' AND (completed_at IS NULL OR completed_at <> "
                "started_at + duration_seconds * interval '1 second')) "
                "OR (status <> 'completed' AND completed_at IS NOT NULL) "
                "OR (status = 'started' AND duration_seconds IS NOT NULL)"
            )
        )
        integration = (
            await conn.execute(
                text(
                    "SELECT u.full_name, c.name, count(*) FROM user_workflow_history h "
                    "JOIN users u ON u.id = h.user_id JOIN companies c ON c.id = u.company_id "
                    "GROUP BY u.id, c.name ORDER BY count(*) DESC LIMIT 1"
                )
            )
        ).one()
        chros = (
            await conn.execute(
                text("SELECT count(*) FILTER (WHERE role = 'chro') FROM users GROUP BY company_id")
            )
        ).scalars()
        document_statuses = set(
            (await conn.execute(text("SELECT DISTINCT status FROM documents"))).scalars()
        )
        bad_simulations = await conn.scalar(
            text(
                "SELECT count(*) FROM simulations WHERE status <> 'completed' "
                "OR results -> 'totals' ->> 'hours_saved' IS NULL "
                "OR jsonb_array_length(results -> 'monthly') "
                "<> (parameters ->> 'horizon_months')::int"
            )
        )
    assert ANCHOR - timedelta(days=365) <= first < last < ANCHOR
    assert 0.80 < statuses["completed"] / TINY.history < 0.92
    assert set(statuses) <= {"completed", "abandoned", "started"}
    assert inconsistent == 0
    assert integration[0] == INTEGRATION_ACCOUNT
    assert integration[1] == MARKER_COMPANY
    assert 0.8 * TINY.integration_runs < integration[2] < 1.2 * TINY.integration_runs
    assert set(chros) == {1}
    assert document_statuses == {"uploaded", "processing", "processed", "failed"}
    assert bad_simulations == 0

    # The identity sequences continue after the supplied ids: plain inserts still work.
    async with engine.begin() as conn:
        new_id = await conn.scalar(
            text(
                "INSERT INTO companies (name, slug, country) VALUES ('Later', 'later', 'GB') "
                "RETURNING id"
            )
        )
        run_id = await conn.scalar(
            text(
                "INSERT INTO user_workflow_history (user_id, workflow_id, company_id, status, "
                "started_at) SELECT u.id, w.id, w.company_id, 'started', now() FROM workflows w "
                "JOIN users u ON u.company_id = w.company_id LIMIT 1 RETURNING id"
            )
        )
    assert new_id == existing + TINY.companies + 1
    assert run_id == TINY.history + 1

    # A second run adds nothing.
    async with engine.begin() as conn:
        again = await bulk_seed(conn, TINY, now=NOW)
    assert not again.loaded
    assert "already loaded" in again.detail
    assert (await _counts(engine))["user_workflow_history"] == TINY.history + 1


async def test_vacuum_after_the_load_makes_every_page_all_visible(
    scratch_engine: AsyncEngine,
) -> None:
    """Index-only scans need the visibility map set, even on a server that commits
    asynchronously (the test server does) and right after the load."""
    async with scratch_engine.begin() as conn:
        report = await bulk_seed(conn, TINY, now=NOW)
    autocommit = scratch_engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await vacuum_analyze(conn, report.transaction_id)
        rows = (
            await conn.execute(
                text(
                    "SELECT relname, relpages, relallvisible, reltuples FROM pg_class "
                    "WHERE relname = ANY(:tables)"
                ),
                {"tables": TABLES},
            )
        ).all()
    assert len(rows) == len(TABLES)
    for name, pages, visible, tuples in rows:
        assert pages > 0, name
        assert visible == pages, (name, pages, visible)
        assert tuples > 0, name  # analysed


@pytest.mark.embedded
def test_rows_are_deterministic(small_chunks: None) -> None:
    """The same sizes and day give the same rows, chunk by chunk, whatever the order."""
    bases = dict.fromkeys(TABLES, 0)

    def generate() -> tuple[list[object], ...]:
        plan = build_plan(TINY, ANCHOR, bases, "hash")
        history = [history_chunk(plan, 0, i) for i in range(6)]
        documents = [document_chunk(plan, 0, i) for i in range(3)]
        return plan.users, plan.workflows, history, documents, simulation_rows(plan, 0)

    first, second = generate(), generate()
    assert first == second
    users, _, history, documents, simulations = first
    assert len(users) == TINY.users
    assert sum(len(chunk) for chunk in history) == TINY.history
    assert sum(len(chunk) for chunk in documents) == TINY.documents
    assert len(simulations) == TINY.simulations
    # Ids follow the order in time: each chunk is a later slice of the year.
    runs = [row for chunk in history for row in chunk]
    assert [row[0] for row in runs] == list(range(1, TINY.history + 1))
    assert all(a[5] <= b[5] for a, b in itertools.pairwise(runs))


@pytest.mark.embedded
async def test_refuses_sqlite(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    try:
        async with engine.begin() as conn:
            with pytest.raises(BulkSeedError, match="need PostgreSQL"):
                await bulk_seed(conn, TINY)
    finally:
        await engine.dispose()


@pytest.mark.embedded
def test_seed_command_refuses_bulk_scales_on_sqlite(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        manage.app,
        ["seed", "--scale", "medium"],
        env={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'etter.db'}"},
    )
    assert result.exit_code == 2, result.output
    assert "needs PostgreSQL" in result.output


def test_seed_command_loads_then_does_nothing(
    scratch_url: str, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    """`manage.py seed --scale medium` (here at the tiny size) dispatches to the bulk loader,
    loads, VACUUMs, and a second run adds nothing."""
    monkeypatch.setitem(BULK_SIZES, "medium", TINY)
    runner = CliRunner()
    env = {"DATABASE_URL": scratch_url, "ENVIRONMENT": "development"}

    first = runner.invoke(manage.app, ["seed", "--scale", "medium"], env=env)
    assert first.exit_code == 0, first.output
    assert "Seeded medium in" in first.output
    assert f"{TINY.history:,} workflow runs" in first.output

    second = runner.invoke(manage.app, ["seed", "--scale", "medium"], env=env)
    assert second.exit_code == 0, second.output
    assert "already loaded" in second.output

    async def history_visibility() -> tuple[int, int, int]:
        engine = create_async_engine(scratch_url)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT (SELECT count(*) FROM user_workflow_history), relpages, "
                            "relallvisible FROM pg_class WHERE relname = 'user_workflow_history'"
                        )
                    )
                ).one()
                return row[0], row[1], row[2]
        finally:
            await engine.dispose()

    runs, pages, visible = asyncio.run(history_visibility())
    assert runs == TINY.history
    assert pages > 0
    assert visible == pages
