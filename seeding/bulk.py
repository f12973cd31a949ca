"""Bulk sample data for performance work: `manage.py seed --scale medium|large`, PostgreSQL only.

The rows go in with COPY (asyncpg's `copy_records_to_table`, binary format) in chunks of
`CHUNK_ROWS`; a worker thread generates the next chunk while the server ingests the current
one. Everything is deterministic: each chunk draws from its own `random.Random` seeded with
(SEED, table, chunk index), and every timestamp is an offset from the load day (midnight UTC),
so the same scale loaded on the same day into an empty database gives the same rows on every
machine (into a database with rows already, the ids start after the existing ones).

The load is one transaction: it either lands whole or not at all. It is idempotent: the marker
company `Bulk Company 0001` says the bulk data is already there, and a second run adds nothing.

Shapes, chosen to look like a real customer base rather than uniform noise:
- company sizes follow a long tail (the biggest tenant holds ~15 % of the rows);
- users have departments, job titles and first/last names that make autocomplete realistic,
  one chro per company and a few deactivated accounts;
- workflow popularity within a company is Zipf-like; drafts are never run;
- history spans the last 365 days with activity growing over the year, during working hours,
  mostly `completed`; ids grow with `started_at`, as they do when rows are appended live;
  one integration account of the first company (`INTEGRATION_ACCOUNT`) holds a fifth of it,
  ten thousand keyset pages deep;
- documents mostly `processed`, some `uploaded`, `processing` and `failed`;
- simulations carry results computed by the simulation's own model
  (services/simulation_model.py) from the completed runs each workflow had in the 90 days
  before the simulation.
Documents get metadata only: no bytes are written to storage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from common.security import hash_password
from schemas.simulations import SimulationParametersInput
from services.simulation_model import (
    HISTORY_WINDOW_DAYS,
    Assumptions,
    WorkflowInput,
    automation_potential,
    simulate,
)

SEED = 20261128
BULK_PASSWORD = "etter-bulk-2026"
MARKER_COMPANY = "Bulk Company 0001"
CHUNK_ROWS = 50_000
HISTORY_DAYS = 365


@dataclass(frozen=True, slots=True)
class BulkSizes:
    companies: int
    users: int
    workflows: int
    history: int
    documents: int
    simulations: int
    # Of `history`, the runs of one integration account of the first company: an RPA bot
    # recording hundreds of runs a day, whose history is ten thousand pages deep.
    integration_runs: int = 0

    @property
    def total_rows(self) -> int:
        return (
            self.companies
            + self.users
            + self.workflows
            + self.history
            + self.documents
            + self.simulations
        )


MEDIUM = BulkSizes(50, 20_000, 1_000, 1_000_000, 100_000, 500, integration_runs=210_000)
LARGE = BulkSizes(500, 200_000, 10_000, 10_000_000, 1_000_000, 5_000, integration_runs=2_100_000)
INTEGRATION_ACCOUNT = "Integration Bot"
BULK_SIZES = {"medium": MEDIUM, "large": LARGE}


class BulkSeedError(Exception):
    """The bulk load cannot run here (wrong database, impossible sizes)."""


@dataclass
class BulkSeedReport:
    loaded: bool
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    transaction_id: int | None = None  # of the load, for `vacuum_analyze`


Progress = Callable[[int], None]

DEPARTMENTS = {  # department: (weight, job titles, processes its workflows automate)
    "Engineering": (24, ["Engineer", "Senior Engineer", "Staff Engineer", "Engineering Manager"],
                    ["Code review", "Release", "Incident triage", "Onboarding setup"]),
    "Sales": (16, ["Account Executive", "Sales Manager", "SDR"],
              ["Lead qualification", "Quote preparation", "CRM update", "Renewal"]),
    "Support": (14, ["Support Agent", "Support Lead"],
                ["Ticket triage", "Refund handling", "Knowledge base update", "Escalation"]),
    "Operations": (12, ["Operations Analyst", "Operations Manager"],
                   ["Vendor onboarding", "Inventory check", "Shipment tracking", "Reporting"]),
    "Finance": (9, ["Accountant", "Financial Analyst", "Controller"],
                ["Invoice processing", "Expense approval", "Month-end close", "Forecast"]),
    "Marketing": (9, ["Marketing Manager", "Content Writer", "Designer"],
                  ["Campaign launch", "Newsletter", "Social posting", "Event planning"]),
    "HR": (6, ["HR Partner", "Recruiter", "Payroll Specialist"],
           ["Candidate screening", "Offer letter", "Employee onboarding", "Payroll run"]),
    "Legal": (4, ["Counsel", "Paralegal"],
              ["Contract review", "NDA drafting", "Compliance check", "Policy update"]),
}  # fmt: skip
FIRST_NAMES = [
    "Aaron", "Abigail", "Adam", "Aisha", "Alex", "Alice", "Amara", "Amelia", "Ana", "Andre",
    "Anna", "Arjun", "Ava", "Ben", "Bianca", "Carlos", "Chen", "Chloe", "Clara", "Daniel", "David",
    "Diana", "Dmitri", "Elena", "Eli", "Emma", "Ethan", "Fatima", "Felix", "Fiona", "Gabriel",
    "Grace", "Hannah", "Hassan", "Hugo", "Ines", "Isaac", "Isabel", "Ivan", "Jack", "James",
    "Julia", "Kai", "Kenji", "Laura", "Leo", "Lina", "Lucas", "Maria", "Marco", "Martin", "Maya",
    "Mei", "Mohammed", "Nadia", "Noah", "Nora", "Olivia", "Omar", "Oscar", "Paula", "Priya",
    "Rafael", "Rosa", "Ryan", "Sam", "Sara", "Sofia", "Tom", "Uma", "Victor", "Wei", "Yara",
    "Yusuf", "Zoe"
]  # fmt: skip
LAST_NAMES = [
    "Abbott", "Adams", "Ahmed", "Alvarez", "Baker", "Becker", "Brown", "Castro", "Chen", "Cohen",
    "Costa", "Diaz", "Dubois", "Eriksen", "Fischer", "Garcia", "Gomez", "Green", "Hansen",
    "Hernandez", "Hughes", "Ito", "Jensen", "Johnson", "Kaur", "Kim", "Kowalski", "Kumar",
    "Larsen", "Lee", "Lopez", "Martin", "Meyer", "Moreau", "Muller", "Murphy", "Nakamura",
    "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Perez", "Rossi", "Santos", "Schmidt", "Silva",
    "Singh", "Smith", "Tanaka", "Taylor", "Wagner", "Walker", "Wang", "Weber", "Williams",
    "Wilson", "Wright", "Yamamoto", "Young", "Zhang"
]  # fmt: skip
INDUSTRIES = ["Software", "Manufacturing", "Retail", "Healthcare", "Finance", "Logistics"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "CA", "IN", "SG", "ES", "SE"]
FILE_TYPES = [  # extension, content type, weight, typical size
    ("pdf", "application/pdf", 45, 400_000),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 25,
     120_000),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 15, 90_000),
    ("csv", "text/csv", 10, 60_000),
    ("txt", "text/plain", 5, 8_000),
]  # fmt: skip
DOCUMENT_TOPICS = [
    "Org chart", "Role catalogue", "Process map", "Skills survey", "Headcount plan",
    "Training plan", "Automation review", "Job descriptions", "Policy", "Quarterly report",
]  # fmt: skip


def _rng(*key: object) -> random.Random:
    """A generator of its own per (table, chunk): chunks do not depend on generation order."""
    # Sample data, not secrets: a seeded, reproducible generator is the point.
    return random.Random("/".join(str(part) for part in (SEED, *key)))  # noqa: S311


# --- the plan: companies, users and workflows, held in memory --------------------------------


@dataclass
class Plan:
    """The small tables, and what the big ones need to stay consistent with them."""

    anchor: datetime  # the load day, midnight UTC; every row is older than this
    sizes: BulkSizes
    companies: list[tuple[Any, ...]]
    users: list[tuple[Any, ...]]
    workflows: list[tuple[Any, ...]]
    user_ids: list[int]  # users[i] id, in order
    integration_user: int  # index in user_ids of the first company's integration account
    user_company: list[int]  # users[i] -> company id
    chro_of: dict[int, int]  # company id -> its chro's user id
    # company id -> workflow ids and cumulative run weights (Zipf-like; drafts never run)
    workflow_picks: dict[int, tuple[list[int], list[float]]]
    workflow_seconds: dict[int, float]  # typical duration of a run
    active_workflows: dict[int, list[WorkflowInput]]  # company id -> its active workflows
    # workflow id -> completed runs started on each day of the history (filled while loading)
    completed_per_day: dict[int, list[int]] = field(default_factory=dict)


COMPANY_COLUMNS = [
    "id", "name", "slug", "industry", "country", "employee_count", "is_active",
    "created_at", "updated_at",
]  # fmt: skip
USER_COLUMNS = [
    "id", "company_id", "email", "full_name", "department", "job_title", "role",
    "hashed_password", "is_active", "last_login_at", "created_at", "updated_at",
]  # fmt: skip
WORKFLOW_COLUMNS = [
    "id", "company_id", "name", "department", "description", "status", "steps",
    "automation_potential", "created_by", "created_at", "updated_at",
]  # fmt: skip
HISTORY_COLUMNS = [
    "id", "user_id", "workflow_id", "company_id", "status", "started_at", "completed_at",
    "duration_seconds", "created_at", "updated_at",
]  # fmt: skip
DOCUMENT_COLUMNS = [
    "id", "tenant_id", "uploaded_by", "title", "filename", "content_type", "size_bytes",
    "sha256", "storage_key", "status", "version", "created_at", "updated_at",
]  # fmt: skip
SIMULATION_COLUMNS = [
    "id", "company_id", "created_by", "name", "parameters", "status", "results",
    "completed_at", "created_at", "updated_at",
]  # fmt: skip


def _split(total: int, weights: Sequence[float], minimum: int) -> list[int]:
    """`total` split in proportion to `weights`, each part at least `minimum`, summing exactly."""
    spare = total - minimum * len(weights)
    scale = sum(weights)
    parts = [minimum + math.floor(spare * w / scale) for w in weights]
    for i in range(total - sum(parts)):  # the rounding remainder, biggest first
        parts[i % len(parts)] += 1
    return parts


def build_plan(sizes: BulkSizes, anchor: datetime, bases: dict[str, int], pw_hash: str) -> Plan:
    """The companies, users and workflows of `sizes`, ids starting after `bases`."""
    if sizes.companies < 1 or sizes.users < 2 * sizes.companies:
        raise BulkSeedError("Bulk sizes need at least one company and two users per company.")
    if sizes.workflows < sizes.companies:
        raise BulkSeedError("Bulk sizes need at least one workflow per company.")
    rng = _rng("plan")
    # A long tail: company k weighs 1/k^0.8, so the biggest tenant has a few times the mean.
    weights = [1 / (k + 1) ** 0.8 for k in range(sizes.companies)]
    users_per = _split(sizes.users, weights, 2)
    workflows_per = _split(sizes.workflows, weights, 1)
    departments = list(DEPARTMENTS)
    dept_cum = list(accumulate(DEPARTMENTS[d][0] for d in departments))
    if sizes.integration_runs > sizes.history:
        raise BulkSeedError("The integration account's runs are part of the history's.")
    plan = Plan(anchor, sizes, [], [], [], [], 0, [], {}, {}, {}, {})
    user_id, workflow_id = bases["users"], bases["workflows"]
    for k in range(sizes.companies):
        company_id = bases["companies"] + k + 1
        name = f"Bulk Company {k + 1:04d}"
        slug = name.lower().replace(" ", "-")
        created = anchor - timedelta(days=rng.uniform(800, 1100))
        plan.companies.append(
            (company_id, name, slug, rng.choice(INDUSTRIES), rng.choice(COUNTRIES),
             users_per[k] + rng.randint(0, users_per[k] // 4), True, created, created)
        )  # fmt: skip
        for n in range(users_per[k]):
            user_id += 1
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            dept = "HR" if n == 0 else rng.choices(departments, cum_weights=dept_cum)[0]
            title = "Chief HR Officer" if n == 0 else rng.choice(DEPARTMENTS[dept][1])
            if k == 0 and n == 1:  # the first company's integration account
                first, last, dept, title = "Integration", "Bot", "Operations", "Service account"
                plan.integration_user = len(plan.user_ids)
            active = n == 0 or rng.random() > 0.03
            login = (
                anchor - timedelta(hours=rng.uniform(1, 24 * 60)) if rng.random() < 0.8 else None
            )
            created = anchor - timedelta(days=rng.uniform(366, 730))
            plan.users.append(
                (user_id, company_id, f"{first}.{last}.{user_id}@{slug}.example".lower(),
                 f"{first} {last}", dept, title, "chro" if n == 0 else "member", pw_hash,
                 active, login, created, created)
            )  # fmt: skip
            plan.user_ids.append(user_id)
            plan.user_company.append(company_id)
            if n == 0:
                plan.chro_of[company_id] = user_id
        ids, run_weights, active_workflows = [], [], []
        for n in range(workflows_per[k]):
            workflow_id += 1
            dept = rng.choices(departments, cum_weights=dept_cum)[0]
            process = rng.choice(DEPARTMENTS[dept][2])
            steps = [
                {
                    "name": f"Step {s + 1}",
                    "minutes": float(rng.choice([5, 10, 15, 20, 30, 45, 60, 90, 120])),
                    "automation_score": round(rng.betavariate(2, 2.5), 2),
                }
                for s in range(rng.randint(3, 8))
            ]
            status = rng.choices(["active", "draft", "archived"], weights=[80, 12, 8])[0]
            created = anchor - timedelta(days=rng.uniform(366, 420))
            wf_name = f"{process} {n + 1}"
            plan.workflows.append(
                (workflow_id, company_id, wf_name, dept, f"{process} in {dept}, step by step.",
                 status, json.dumps(steps), automation_potential(steps), plan.chro_of[company_id],
                 created, created)
            )  # fmt: skip
            plan.workflow_seconds[workflow_id] = sum(s["minutes"] for s in steps) * 60
            if status == "active":
                active_workflows.append(WorkflowInput(workflow_id, wf_name, dept, steps, 0))
            if status != "draft":
                ids.append(workflow_id)
                run_weights.append((1.0 if status == "active" else 0.2) / (len(ids) ** 0.9))
        if not ids:  # every workflow a draft: let the first one be run anyway
            ids, run_weights = [workflow_id - workflows_per[k] + 1], [1.0]
        plan.workflow_picks[company_id] = (ids, list(accumulate(run_weights)))
        plan.active_workflows[company_id] = active_workflows
    return plan


# --- the big tables, one chunk at a time ------------------------------------------------------


def _chunk_bounds(total: int, index: int) -> tuple[int, int]:
    return index * CHUNK_ROWS, min(total, (index + 1) * CHUNK_ROWS)


def _moment(plan: Plan, position: float) -> tuple[datetime, int]:
    """The time (and day 0..364) of the row at `position` (0..1) of the last 365 days.

    Activity grows linearly over the year (twice as much at its end as at its start), so the
    day is the inverse of the CDF (u + u²/2) / 1.5; within its day the row falls in working
    hours (07:00-18:00 UTC). Monotonic in `position`, so ids follow time.
    """
    u = min(-1 + math.sqrt(1 + 3 * position), 1 - 1e-12) * HISTORY_DAYS
    day = math.floor(u)
    seconds = 7 * 3600 + (u - day) * 11 * 3600
    return plan.anchor - timedelta(days=HISTORY_DAYS - day, seconds=-seconds), day


def _positions(rng: random.Random, total: int, start: int, stop: int) -> list[float]:
    """Sorted positions of rows start..stop of `total` in time: each chunk is one time slice."""
    return sorted((start + rng.random() * (stop - start)) / total for _ in range(stop - start))


def history_chunk(plan: Plan, base_id: int, index: int) -> list[tuple[Any, ...]]:
    rng = _rng("history", index)
    start, stop = _chunk_bounds(plan.sizes.history, index)
    n_users = len(plan.user_ids)
    integration_share = plan.sizes.integration_runs / plan.sizes.history
    one_day_ago = plan.anchor - timedelta(days=1)
    rows = []
    for offset, position in enumerate(_positions(rng, plan.sizes.history, start, stop)):
        started, day = _moment(plan, position)
        i = plan.integration_user if rng.random() < integration_share else rng.randrange(n_users)
        company_id = plan.user_company[i]
        ids, cum = plan.workflow_picks[company_id]
        workflow_id = ids[bisect_left(cum, rng.random() * cum[-1])]
        seconds = int(plan.workflow_seconds[workflow_id] * rng.lognormvariate(0, 0.35))
        r = rng.random()
        if r < 0.86:
            status, completed, duration = "completed", started + timedelta(seconds=seconds), seconds
            per_day = plan.completed_per_day.get(workflow_id)
            if per_day is None:
                per_day = plan.completed_per_day[workflow_id] = [0] * HISTORY_DAYS
            per_day[day] += 1
        elif r < 0.97 or started < one_day_ago:  # an old unfinished run counts as abandoned
            status, completed, duration = "abandoned", None, int(seconds * rng.random())
        else:
            status, completed, duration = "started", None, None
        rows.append(
            (base_id + start + offset + 1, plan.user_ids[i], workflow_id, company_id, status,
             started, completed, duration, started, completed or started)
        )  # fmt: skip
    return rows


def document_chunk(plan: Plan, base_id: int, index: int) -> list[tuple[Any, ...]]:
    rng = _rng("documents", index)
    start, stop = _chunk_bounds(plan.sizes.documents, index)
    type_cum = list(accumulate(t[2] for t in FILE_TYPES))
    rows = []
    for offset, position in enumerate(_positions(rng, plan.sizes.documents, start, stop)):
        document_id = base_id + start + offset + 1
        created, _ = _moment(plan, position)
        i = rng.randrange(len(plan.user_ids))
        tenant_id = plan.user_company[i]
        ext, content_type, _, typical = FILE_TYPES[bisect_left(type_cum, rng.random() * 100)]
        topic = rng.choice(DOCUMENT_TOPICS)
        r = rng.random()
        status = (
            "processed" if r < 0.80 else "uploaded" if r < 0.90 else
            "processing" if r < 0.95 else "failed"
        )  # fmt: skip
        digest = hashlib.sha256(f"{SEED}/document/{document_id}".encode()).hexdigest()
        filename = f"{topic.lower().replace(' ', '-')}-{created.year}-{document_id}.{ext}"
        updated = (
            created if status == "uploaded" else created + timedelta(minutes=rng.uniform(1, 30))
        )
        rows.append(
            (document_id, tenant_id, plan.user_ids[i], f"{topic} {created.year} #{document_id}",
             filename, content_type, int(typical * rng.lognormvariate(0, 0.8)) + 1, digest,
             f"bulk/{tenant_id}/{digest[:2]}/{digest}", status, 1, created, updated)
        )  # fmt: skip
    return rows


def simulation_rows(plan: Plan, base_id: int) -> list[tuple[Any, ...]]:
    """Completed simulations, their results computed by the simulation's own model from the
    completed runs each workflow had in the 90 days before the simulation (to the day)."""
    rng = _rng("simulations")
    total = plan.sizes.simulations
    # Prefix sums: completed runs of days [a, b) in O(1).
    prefix = {w: [0, *accumulate(days)] for w, days in plan.completed_per_day.items()}
    no_runs = [0] * (HISTORY_DAYS + 1)
    rows = []
    for n, position in enumerate(_positions(rng, total, 0, total)):
        created, day = _moment(plan, position)
        company_id = plan.user_company[rng.randrange(len(plan.user_ids))]
        horizon = rng.choice([12, 18, 24, 36])
        parameters = SimulationParametersInput(
            adoption_rate=round(rng.uniform(0.2, 0.9), 2),
            horizon_months=horizon,
            ramp_months=min(horizon, rng.choice([0, 3, 6, 9, 12])),
            hourly_cost=float(rng.choice([35, 45, 60, 75, 90, 120])),
            departments=(
                sorted(rng.sample(list(DEPARTMENTS), rng.randint(1, 3)))
                if rng.random() < 0.3
                else None
            ),
        )
        first_day = max(0, day - HISTORY_WINDOW_DAYS)
        in_scope = []
        for workflow in plan.active_workflows[company_id]:
            if parameters.departments is None or workflow.department in parameters.departments:
                runs = prefix.get(workflow.id, no_runs)
                in_scope.append(replace(workflow, completed_runs=runs[day] - runs[first_day]))
        results = simulate(
            Assumptions(
                adoption_rate=parameters.adoption_rate,
                horizon_months=parameters.horizon_months,
                ramp_months=parameters.ramp_months,
                hourly_cost=parameters.hourly_cost,
            ),
            in_scope,
        )
        name = f"{round(parameters.adoption_rate * 100)}% adoption over {horizon} months" + (
            f" ({', '.join(parameters.departments)})" if parameters.departments else ""
        )
        finished = created + timedelta(seconds=rng.uniform(0.05, 2))
        rows.append(
            (base_id + n + 1, company_id, plan.chro_of[company_id], name,
             json.dumps(parameters.model_dump(mode="json")), "completed", json.dumps(results),
             finished, created, finished)
        )  # fmt: skip
    return rows


# --- loading ---------------------------------------------------------------------------------

TABLES = ["companies", "users", "workflows", "user_workflow_history", "documents", "simulations"]
VACUUM_ATTEMPTS = 5


async def bulk_seed(
    connection: AsyncConnection,
    sizes: BulkSizes,
    *,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BulkSeedReport:
    """Load `sizes` rows into the database of `connection`, inside the caller's transaction.

    The caller commits. Nothing is loaded when the marker company exists already.
    """
    if connection.dialect.name != "postgresql":
        raise BulkSeedError(
            "The medium and large scales need PostgreSQL (they load with COPY); "
            "set DATABASE_URL to a PostgreSQL database, or use --scale demo|small."
        )
    began = time.perf_counter()
    present = await connection.scalar(
        text("SELECT count(*) FROM companies WHERE name LIKE 'Bulk Company %'")
    )
    if present:
        return BulkSeedReport(
            loaded=False,
            detail=f"Bulk data is already loaded ({present} bulk companies); nothing seeded.",
        )
    # A long load is not a runaway query. EXCLUSIVE mode lets readers in but no other writer,
    # so the ids taken after max(id) below cannot collide with anyone else's.
    await connection.execute(text("SET LOCAL statement_timeout = 0"))
    # A synchronous commit, even on a server that runs with synchronous_commit=off: until the
    # commit record is flushed, no hint bit can be set on the new rows, so a VACUUM straight
    # after the load could not mark a single page all-visible (no index-only scans).
    await connection.execute(text("SET LOCAL synchronous_commit = on"))
    await connection.execute(text(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE"))
    # Table names in the SQL below are the TABLES constant, never input (bandit B608: safe).
    bases = {
        table: await connection.scalar(
            text(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608  # nosec B608
        )
        for table in TABLES
    }
    anchor = (now or datetime.now(UTC)).astimezone(UTC)
    anchor = anchor.replace(hour=0, minute=0, second=0, microsecond=0)
    pw_hash = await hash_password(BULK_PASSWORD)  # one argon2 hash for every bulk user
    plan = await anyio.to_thread.run_sync(build_plan, sizes, anchor, bases, pw_hash)
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise BulkSeedError("The database connection was closed.")

    async def copy(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        await driver.copy_records_to_table(table, records=rows, columns=columns)
        if progress is not None:
            progress(len(rows))

    await copy("companies", COMPANY_COLUMNS, plan.companies)
    await copy("users", USER_COLUMNS, plan.users)
    await copy("workflows", WORKFLOW_COLUMNS, plan.workflows)
    base = bases["user_workflow_history"]
    await _copy_chunks(
        copy, "user_workflow_history", HISTORY_COLUMNS, sizes.history,
        lambda i: history_chunk(plan, base, i),
    )  # fmt: skip
    await _copy_chunks(
        copy, "documents", DOCUMENT_COLUMNS, sizes.documents,
        lambda i: document_chunk(plan, bases["documents"], i),
    )  # fmt: skip
    simulations = await anyio.to_thread.run_sync(simulation_rows, plan, bases["simulations"])
    await copy("simulations", SIMULATION_COLUMNS, simulations)
    for table in TABLES:  # the identity sequences continue after the ids supplied above
        await connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608  # nosec B608
                f"(SELECT max(id) FROM {table}))"
            )
        )
    transaction_id = await connection.scalar(
        text("SELECT backend_xid FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    )
    counts = {
        "companies": sizes.companies, "users": sizes.users, "workflows": sizes.workflows,
        "workflow runs": sizes.history, "documents": sizes.documents,
        "simulations": sizes.simulations,
    }  # fmt: skip
    return BulkSeedReport(
        loaded=True,
        seconds=time.perf_counter() - began,
        counts=counts,
        transaction_id=transaction_id,
    )


async def _copy_chunks(
    copy: Callable[[str, list[str], list[tuple[Any, ...]]], Awaitable[None]],
    table: str,
    columns: list[str],
    total: int,
    generate: Callable[[int], list[tuple[Any, ...]]],
) -> None:
    """COPY `total` rows chunk by chunk; a worker thread generates chunk k+1 during COPY of k.

    Chunks are generated strictly one after another (never two at once), in order.
    """
    chunks = math.ceil(total / CHUNK_ROWS)
    if not chunks:
        return
    pending = asyncio.ensure_future(anyio.to_thread.run_sync(generate, 0))
    for index in range(chunks):
        rows = await pending
        if index + 1 < chunks:
            pending = asyncio.ensure_future(anyio.to_thread.run_sync(generate, index + 1))
        await copy(table, columns, rows)


async def vacuum_analyze(
    connection: AsyncConnection, after_transaction: int | None = None, wait_seconds: float = 60
) -> None:
    """Fresh statistics for the planner and a visibility map for index-only scans.

    VACUUM cannot run in a transaction: pass a connection in AUTOCOMMIT mode, after the commit.
    VACUUM marks a page all-visible only when no snapshot older than its rows is left and the
    hint bits of its rows can be set, and right after a load neither is sure:
    - with `after_transaction` (the load's) it first waits, up to `wait_seconds`, for older
      snapshots to end (autovacuum's ANALYZE, woken by the load, often holds one);
    - a hint bit waits for the WAL flush of the latest asynchronous commit among the 32
      transaction ids of its commit-log group (ANALYZE commits too, autovacuum's included).
      So this session commits synchronously, flushes the WAL just before each VACUUM, runs
      every VACUUM before any ANALYZE, and VACUUMs a table again (which then only visits the
      pages still missing) until its visibility map is complete, a few times at most.
    """
    if after_transaction is not None:
        deadline = time.monotonic() + wait_seconds
        older = text(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND backend_xmin IS NOT NULL AND age(backend_xmin) >= age(CAST(:xid AS xid))"
        )
        while await connection.scalar(older, {"xid": after_transaction}):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    await connection.execute(text("SET statement_timeout = 0"))  # minutes on the large scale
    await connection.execute(text("SET synchronous_commit = on"))
    visibility = text(
        "SELECT relallvisible >= relpages FROM pg_class WHERE oid = CAST(:table AS regclass)"
    )
    try:
        for table in TABLES:
            for _ in range(VACUUM_ATTEMPTS):
                # A synchronous commit flushes the WAL of every commit before it.
                await connection.execute(text("SELECT pg_current_xact_id()"))
                await connection.execute(text(f"VACUUM {table}"))
                if await connection.scalar(visibility, {"table": table}):
                    break
                await asyncio.sleep(0.2)
        for table in TABLES:
            await connection.execute(text(f"ANALYZE {table}"))
    finally:
        await connection.execute(text("RESET statement_timeout"))
        await connection.execute(text("RESET synchronous_commit"))
