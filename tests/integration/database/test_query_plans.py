"""Proof from the planner: every hot query uses an index, none scans a big table sequentially.

A scratch database gets a reduced bulk data set (seeding/bulk.py: the same shapes as
`seed --scale medium`, a fifth of its history), VACUUM ANALYZE, and then each hot endpoint is
called once through the app. Every statement it sends is captured with its parameters and
EXPLAINed (FORMAT JSON) on the same database, exactly as sent: the assertions are about the
plans of the SQL the services really issue, not of hand-written look-alikes.

Each statement is explained twice: the custom plan (for its parameters) and the generic plan
(for any parameters), which PostgreSQL may switch to after five runs of a prepared statement,
and asyncpg prepares them all. For each endpoint: no Seq Scan of users, user_workflow_history
or documents in any plan, and an index scan (plain, index-only or bitmap) of each big table
it reads. A history page, first or far down, reads only its own rows. And each index of
migration 0002 is chosen for some hot query. No planner setting is touched: realistic row
counts make PostgreSQL prefer the indexes by itself.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from common.security import create_access_token
from seeding.bulk import (
    MARKER_COMPANY,
    BulkSizes,
    bulk_seed,
    vacuum_analyze,
)
from settings.server import create_app
from tests.conftest import make_settings
from tests.fixtures.bulk_queries import biggest_tenant_ids
from tests.fixtures.scratch_database import scratch_database

# Seconds of a bulk-seeded scratch database: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.long_running

# Enough rows that an index beats a sequential scan the way it does in production: the biggest
# tenant holds ~15 % of every table, a user ~20 runs, the integration account 20,000.
PLAN_SIZES = BulkSizes(
    companies=20,
    users=8_000,
    workflows=400,
    history=200_000,
    documents=30_000,
    simulations=200,
    integration_runs=20_000,
)

BIG_TABLES = {"users", "user_workflow_history", "documents"}
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


@dataclass
class Captured:
    statement: str
    parameters: tuple[Any, ...]


@dataclass
class Explained:
    query: Captured
    generic: bool  # the plan for any parameters, or the one for these (see `_explain`)
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def statement(self) -> str:
        return self.query.statement

    def seq_scans(self) -> set[str]:
        return {n["Relation Name"] for n in self.nodes if n["Node Type"] == "Seq Scan"}

    def indexed(self) -> set[str]:
        return {n["Relation Name"] for n in self.nodes if n["Node Type"] in INDEX_SCANS}


@dataclass
class Bulk:
    url: str
    engine: AsyncEngine
    chro: int
    member: int
    integration: int
    workflow: int
    document: int
    simulation: int
    admin: int


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


@pytest.fixture(scope="module")
async def bulk(postgres_url: str) -> AsyncIterator[Bulk]:
    async with scratch_database(postgres_url) as url:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                report = await bulk_seed(conn, PLAN_SIZES)
            async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
                await vacuum_analyze(conn, report.transaction_id)
            async with engine.connect() as conn:
                ids = await biggest_tenant_ids(conn)
            async with engine.begin() as conn:  # the platform operator, for its own paths
                admin = await conn.scalar(
                    text(
                        "INSERT INTO users (company_id, email, full_name, role, hashed_password) "
                        "SELECT id, 'operator@plans.example', 'Plan Operator', 'admin', 'x' "
                        "FROM companies WHERE name = :marker RETURNING id"
                    ),
                    {"marker": MARKER_COMPANY},
                )
            yield Bulk(url, engine, *ids, admin)
        finally:
            await engine.dispose()


HOT_PATHS = [
    # (label, path template, big tables whose index must be used); the caller is the chro of
    # the biggest tenant, or the platform admin where the label says so.
    ("users list", "/api/v1/users?page=3", {"users"}),
    ("users by department", "/api/v1/users?department=Sales", {"users"}),
    ("users search", "/api/v1/users?q=zo", {"users"}),
    ("autocomplete, common prefix", "/api/v1/users/autocomplete?q=ma", {"users"}),
    ("autocomplete, rare prefix", "/api/v1/users/autocomplete?q=yusuf.k", {"users"}),
    ("user detail", "/api/v1/users/{member}", {"users"}),
    ("me", "/api/v1/auth/me", {"users"}),
    (
        "history of a user",
        "/api/v1/users/{member}/workflow-history?limit=20",
        {"users", "user_workflow_history"},
    ),
    (
        "history of the integration account",
        "/api/v1/users/{integration}/workflow-history?limit=20",
        {"user_workflow_history"},
    ),
    ("workflows list", "/api/v1/workflows?page=1&page_size=20", {"users"}),
    ("workflow detail with stats", "/api/v1/workflows/{workflow}", {"user_workflow_history"}),
    ("documents list", "/api/v1/documents?page=2", {"documents"}),
    ("documents by status", "/api/v1/documents?status=failed", {"documents"}),
    ("document detail", "/api/v1/documents/{document}", {"documents"}),
    ("documents by status, admin", "/api/v1/documents?status=failed", {"documents"}),
    ("simulations list", "/api/v1/simulations", {"users"}),
    ("simulation detail", "/api/v1/simulations/{simulation}", {"users"}),
    ("dashboard", "/api/v1/chro/dashboard", {"users", "user_workflow_history", "documents"}),
]
DEEP_PAGE = "history of the integration account, 6th page of 100"
SIMULATION = "simulation run"
SIMULATION_BODY = {
    "name": "Plan check",
    "parameters": {"adoption_rate": 0.5, "horizon_months": 12, "ramp_months": 3, "hourly_cost": 60},
}


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, list | tuple):  # an array parameter, e.g. a JSON path
        items = (str(item).replace("\\", "\\\\").replace('"', '\\"') for item in value)
        text_value = "{" + ",".join(f'"{item}"' for item in items) + "}"
    else:
        text_value = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text_value.replace("'", "''") + "'"


async def _explain(
    driver: Any, query: Captured, *, generic: bool, analyze: bool = False
) -> dict[str, Any]:
    """The plan PostgreSQL chooses for `query`: the custom plan for its parameters, or the
    generic plan for any parameters. asyncpg prepares every statement the app sends, and
    after five runs of a prepared statement PostgreSQL may switch to its generic plan: that
    plan must use the indexes too, or one big tenant's (or user's) request pays for it."""
    explain = "EXPLAIN (ANALYZE, FORMAT JSON)" if analyze else "EXPLAIN (FORMAT JSON)"
    if not generic:
        plan = await driver.fetchval(f"{explain} {query.statement}", *query.parameters)
    else:
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        await driver.execute(f"PREPARE plan_check AS {query.statement}")
        try:
            # EXPLAIN EXECUTE takes no bind parameters: the values go in as untyped literals,
            # which the prepared statement's parameter types take; a generic plan ignores them.
            arguments = ", ".join(_literal(value) for value in query.parameters)
            plan = await driver.fetchval(
                f"{explain} EXECUTE plan_check{f'({arguments})' if arguments else ''}"
            )
        finally:
            await driver.execute("DEALLOCATE plan_check; RESET plan_cache_mode")
    # The app's engine decodes json itself on its connections; a bare one would not.
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


@pytest.fixture(scope="module")
async def plans(bulk: Bulk, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Explained]]:
    """Every hot request, sent once through the app; label -> its statements' plans."""
    settings = make_settings(
        database_url=bulk.url,
        cache_enabled=False,  # every request must reach the database
        rate_limit_enabled=False,
        storage_dir=tmp_path_factory.mktemp("plans-storage"),
    )
    app = create_app(settings)
    captured: list[Captured] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append(Captured(statement, tuple(parameters or ())))

    def auth(user_id: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {create_access_token(settings, user_id).token}"}

    async def explain(method: str, path: str, **kwargs: Any) -> list[Explained]:
        """Send the request, then EXPLAIN every query it sent, with the parameters it sent."""
        captured.clear()
        response = await client.request(method, path, **kwargs)
        assert response.status_code < 300, f"{path}: {response.text}"
        explained = []
        async with bulk.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            for query in captured:
                if not query.statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue  # the INSERT of a write: no scan to choose
                for generic in (False, True):
                    plan = await _explain(driver, query, generic=generic)
                    explained.append(Explained(query, generic, list(_walk(plan))))
        assert explained, f"{path} sent no query"
        return explained

    plans: dict[str, list[Explained]] = {}
    async with LifespanManager(app):
        event.listen(app.state.database.engine.sync_engine, "before_cursor_execute", record)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for label, template, _ in HOT_PATHS:
                caller = bulk.admin if label.endswith(", admin") else bulk.chro
                plans[label] = await explain(
                    "GET", template.format(**vars(bulk)), headers=auth(caller)
                )
            # Five keyset pages down the integration account's history, then the sixth.
            path = f"/api/v1/users/{bulk.integration}/workflow-history?limit=100"
            cursor = ""
            for _ in range(5):
                page = await client.get(path + cursor, headers=auth(bulk.chro))
                assert page.status_code == 200, page.text
                cursor = f"&cursor={page.json()['next_cursor']}"
            plans[DEEP_PAGE] = await explain("GET", path + cursor, headers=auth(bulk.chro))
            plans[SIMULATION] = await explain(
                "POST", "/api/v1/simulations", json=SIMULATION_BODY, headers=auth(bulk.chro)
            )
    return plans


# The admin's status filter across tenants: one status ("processed") holds most documents, so
# for *any* status a sequential scan is a fair generic plan; only the custom plans are held
# to the index.
CUSTOM_PLANS_ONLY = {"documents by status, admin"}
CASES = [(label, tables) for label, _, tables in HOT_PATHS] + [
    (DEEP_PAGE, {"user_workflow_history"}),
    (SIMULATION, {"user_workflow_history"}),
]


@pytest.mark.parametrize(("label", "tables"), CASES, ids=[label for label, _ in CASES])
def test_hot_query_uses_indexes_and_no_sequential_scan(
    plans: dict[str, list[Explained]], label: str, tables: set[str]
) -> None:
    explained = [e for e in plans[label] if not (e.generic and label in CUSTOM_PLANS_ONLY)]
    for item in explained:
        scanned = item.seq_scans() & BIG_TABLES
        kind = "generic" if item.generic else "custom"
        assert not scanned, f"sequential scan of {scanned} ({kind} plan) in:\n{item.statement}"
    for generic in (False, True) if label not in CUSTOM_PLANS_ONLY else (False,):
        used = set().union(*(item.indexed() for item in explained if item.generic == generic))
        assert tables <= used, (
            f"no index scan of {tables - used} ({'generic' if generic else 'custom'} plans); "
            f"they scan {used} by index"
        )


def test_every_performance_index_serves_a_hot_query(plans: dict[str, list[Explained]]) -> None:
    """Each index of migration 0002 is chosen by the planner for at least one hot query: none
    is dead weight on every write."""
    path = Path(__file__).parents[3] / "alembic" / "versions" / "0002_add_performance_indexes.py"
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    chosen = {
        node["Index Name"]
        for explained in plans.values()
        for item in explained
        for node in item.nodes
        if "Index Name" in node
    }
    unused = {index.name for index in migration.INDEXES} - chosen
    assert not unused, f"never chosen: {sorted(unused)}"


def _examined(nodes: list[dict[str, Any]], table: str) -> int:
    """Rows the plan read from `table`: those it kept and those its filters threw away."""
    return sum(
        (
            node["Actual Rows"]
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        * node["Actual Loops"]
        for node in nodes
        if node.get("Relation Name") == table
    )


@pytest.mark.parametrize("generic", [False, True], ids=["custom plan", "generic plan"])
@pytest.mark.parametrize(
    ("label", "limit"),
    [
        ("history of the integration account", 20),
        (DEEP_PAGE, 100),
    ],
    ids=["first page", "deep page"],
)
async def test_history_page_reads_only_its_own_rows(
    bulk: Bulk, plans: dict[str, list[Explained]], label: str, limit: int, generic: bool
) -> None:
    """A keyset page of the account with 20,000 runs reads limit + 1 of them, whether the
    page is the first or far down, under the custom plan and under the generic one."""
    (history,) = [
        item
        for item in plans[label]
        if not item.generic and "FROM user_workflow_history" in item.statement
    ]
    async with bulk.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        plan = await _explain(driver, history.query, generic=generic, analyze=True)
    examined = _examined(list(_walk(plan)), "user_workflow_history")
    assert examined <= limit + 1, f"read {examined} runs for a page of {limit}"
