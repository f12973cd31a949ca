"""Deterministic demo and sample data. Idempotent: a second run adds nothing.

Each scale is a fixed random seed and fixed counts, so every run (and every machine) produces
the same rows. Rows are looked up by their natural keys (company name, user email) before they
are created, which is what makes a repeated run a no-op.

The two demo tenants (Acme Corp, Globex) also get a workflow catalogue, a few hundred runs over
the last 120 days, documents whose bytes are written to the storage directory, and one completed
simulation. Natural keys again: a workflow by (company, name); runs only for a workflow that has
none; a document by (tenant, title); a simulation by (company, name). Times are relative to the
moment of seeding, but every draw comes from a `random.Random` seeded with (SEED, tenant, item),
so the shape of the data is the same on every run and machine, and one item's draws never shift
another's.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import DocumentStatus, Role, RunStatus, WorkflowStatus
from common.security import hash_password
from common.storage import PART_SUFFIX, FileStorage
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from models.base import utcnow
from schemas.simulations import SimulationParametersInput
from services.companies import slugify
from services.simulation_model import automation_potential
from services.simulations import run_simulation
from settings.config import get_settings

DEMO_PASSWORD = "etter-demo-2026"
SEED = 20261128

DEPARTMENTS = ["Engineering", "Finance", "HR", "Operations", "Sales", "Support", "Marketing"]
INDUSTRIES = ["Software", "Manufacturing", "Retail", "Healthcare", "Finance", "Logistics"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "CA", "IN", "SG"]
FIRST_NAMES = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jon",
    "Kira",
    "Liam",
    "Maya",
    "Nils",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
]
LAST_NAMES = [
    "Abbott",
    "Brandt",
    "Costa",
    "Diaz",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
]


class Scale(StrEnum):
    DEMO = "demo"
    SMALL = "small"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    email: str
    password: str
    role: str
    company: str


# The logins `make run` prints: one per role, and a second tenant to show isolation.
DEMO_LOGINS = [
    DemoLogin("admin@etter.example", DEMO_PASSWORD, Role.ADMIN, "Etter Platform"),
    DemoLogin("chro@acme.example", DEMO_PASSWORD, Role.CHRO, "Acme Corp"),
    DemoLogin("member@acme.example", DEMO_PASSWORD, Role.MEMBER, "Acme Corp"),
    DemoLogin("chro@globex.example", DEMO_PASSWORD, Role.CHRO, "Globex"),
]
DEMO_COMPANIES = {
    "Etter Platform": ("Software", "NL", 40),
    "Acme Corp": ("Manufacturing", "US", 1200),
    "Globex": ("Logistics", "DE", 800),
}
# The domains each demo company's CHRO may create addresses in (companies.email_domains);
# the generated staff use `<slug>.example`.
DEMO_DOMAINS = {
    "Etter Platform": ["etter.example"],
    "Acme Corp": ["acme.example", "acme-corp.example"],
    "Globex": ["globex.example"],
}
SCALE_SIZES = {Scale.DEMO: (0, 12), Scale.SMALL: (8, 60)}  # extra companies, users per company


@dataclass
class SeedReport:
    companies: int = 0
    users: int = 0
    extra: dict[str, int] = field(default_factory=dict)


# --- the demo tenants' workflows, runs, documents and simulation ------------------------------

DEMO_TENANTS = ("Acme Corp", "Globex")
HISTORY_DAYS = 120


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: str
    department: str
    description: str
    popularity: int  # relative share of the tenant's runs
    steps: tuple[tuple[str, float, float], ...]  # (name, minutes, automation score)


WORKFLOW_CATALOGUE = {
    spec.name: spec
    for spec in (
        WorkflowSpec(
            "Invoice processing", "Finance", "Supplier invoices from receipt to payment run.", 8,
            (("Capture and log the invoice", 5, 0.9), ("Match to purchase order", 12, 0.8),
             ("Resolve exceptions", 20, 0.3), ("Approve and schedule payment", 6, 0.5)),
        ),
        WorkflowSpec(
            "Month-end close", "Finance", "Close the books and report to management.", 1,
            (("Reconcile accounts", 120, 0.6), ("Post accruals and adjustments", 90, 0.4),
             ("Review variances", 60, 0.2), ("Produce the management pack", 45, 0.7)),
        ),
        WorkflowSpec(
            "Expense report review", "Finance", "Check employee expense claims against policy.", 6,
            (("Check receipts", 8, 0.85), ("Check against policy", 5, 0.9), ("Approve", 3, 0.4)),
        ),
        WorkflowSpec(
            "Candidate screening", "HR", "First pass over applications for an open role.", 4,
            (("Parse CVs", 15, 0.9), ("Screen against the criteria", 25, 0.7),
             ("Phone screen", 30, 0.1), ("Schedule interviews", 10, 0.9)),
        ),
        WorkflowSpec(
            "Employee onboarding", "HR", "Everything a new joiner needs in the first week.", 2,
            (("Create accounts", 20, 0.9), ("Prepare equipment", 30, 0.3),
             ("Run the orientation", 90, 0.1), ("Collect policy acknowledgements", 15, 0.8)),
        ),
        WorkflowSpec(
            "Customer ticket triage", "Support", "Classify, route and answer incoming tickets.", 10,
            (("Read and classify", 6, 0.8), ("Route to the right team", 2, 0.95),
             ("Draft the first reply", 10, 0.7), ("Escalate when needed", 8, 0.2)),
        ),
        WorkflowSpec(
            "Sales quote preparation", "Sales", "A priced proposal for a qualified lead.", 3,
            (("Gather requirements", 30, 0.3), ("Configure pricing", 20, 0.7),
             ("Draft the proposal", 45, 0.6), ("Get approval", 10, 0.4)),
        ),
        WorkflowSpec(
            "Production shift scheduling", "Operations", "Next week's shifts on every line.", 4,
            (("Gather availability", 20, 0.8), ("Build the schedule", 40, 0.7),
             ("Publish and confirm", 10, 0.9)),
        ),
        WorkflowSpec(
            "Supplier quality audit", "Operations", "Periodic audit of a key supplier.", 1,
            (("Collect certificates", 30, 0.7), ("Inspect on site", 240, 0.05),
             ("Write the audit report", 60, 0.6)),
        ),
        WorkflowSpec(
            "Shipment exception handling", "Operations", "A delayed or damaged shipment.", 7,
            (("Detect the delay", 5, 0.95), ("Contact the carrier", 15, 0.4),
             ("Rebook", 20, 0.6), ("Notify the customer", 5, 0.9)),
        ),
        WorkflowSpec(
            "Freight invoice audit", "Finance", "Carrier invoices against contracted rates.", 5,
            (("Extract invoice data", 6, 0.9), ("Compare with contracted rates", 10, 0.85),
             ("Dispute overcharges", 25, 0.3)),
        ),
    )
}  # fmt: skip

# Each tenant's workflows and their status: drafts are never run; an archived workflow only
# has runs from before it was archived.
TENANT_WORKFLOWS: dict[str, dict[str, WorkflowStatus]] = {
    "Acme Corp": {
        "Invoice processing": WorkflowStatus.ACTIVE,
        "Month-end close": WorkflowStatus.ACTIVE,
        "Expense report review": WorkflowStatus.ACTIVE,
        "Candidate screening": WorkflowStatus.ACTIVE,
        "Employee onboarding": WorkflowStatus.ACTIVE,
        "Customer ticket triage": WorkflowStatus.ACTIVE,
        "Production shift scheduling": WorkflowStatus.ACTIVE,
        "Supplier quality audit": WorkflowStatus.ARCHIVED,
        "Sales quote preparation": WorkflowStatus.DRAFT,
    },
    "Globex": {
        "Invoice processing": WorkflowStatus.ACTIVE,
        "Month-end close": WorkflowStatus.ACTIVE,
        "Freight invoice audit": WorkflowStatus.ACTIVE,
        "Candidate screening": WorkflowStatus.ACTIVE,
        "Customer ticket triage": WorkflowStatus.ACTIVE,
        "Shipment exception handling": WorkflowStatus.ACTIVE,
        "Sales quote preparation": WorkflowStatus.ACTIVE,
        "Expense report review": WorkflowStatus.ARCHIVED,
    },
}
TENANT_RUNS = {"Acme Corp": 360, "Globex": 300}
ARCHIVED_BEFORE_DAYS = 60


@dataclass(frozen=True, slots=True)
class DocumentSpec:
    title: str
    filename: str
    content_type: str
    status: DocumentStatus


DOCUMENTS = (
    DocumentSpec("Employee directory export", "employee-directory.csv", "text/csv",
                 DocumentStatus.PROCESSED),
    DocumentSpec("Workflow inventory", "workflow-inventory.csv", "text/csv",
                 DocumentStatus.PROCESSED),
    DocumentSpec("AI adoption policy", "ai-adoption-policy.txt", "text/plain",
                 DocumentStatus.UPLOADED),
    DocumentSpec("Skills survey results", "skills-survey.csv", "text/csv",
                 DocumentStatus.PROCESSING),
    DocumentSpec("Quarterly workforce report", "workforce-report.txt", "text/plain",
                 DocumentStatus.FAILED),
)  # fmt: skip
TENANT_DOCUMENTS = {"Acme Corp": 5, "Globex": 4}
SKILLS = ["Data literacy", "Prompting", "Process mapping", "Automation tools", "Change management"]

SIMULATION_NAME = "Copilot rollout: 40% adoption over 18 months"
SIMULATION_PARAMETERS = {"adoption_rate": 0.4, "horizon_months": 18, "ramp_months": 6}
TENANT_HOURLY_COST = {"Acme Corp": 55.0, "Globex": 48.0}


def _rng(*parts: object) -> random.Random:
    # A str seed is hashed with SHA-512, so this is stable across processes and machines.
    return random.Random(":".join(str(p) for p in (SEED, *parts)))


def _count(report: SeedReport, name: str, added: int) -> None:
    report.extra[name] = report.extra.get(name, 0) + added


async def _seed_demo_tenant(
    session: AsyncSession, company: Company, report: SeedReport, now: datetime, storage_dir: Path
) -> None:
    people = list(
        (
            await session.execute(
                select(User)
                .where(User.company_id == company.id, User.is_active)
                .order_by(User.email)
            )
        ).scalars()
    )
    chro = next((u for u in people if u.role == Role.CHRO), None)
    workflows = await _workflows(session, company, chro, report)
    if people:
        await _runs(session, company, workflows, people, now, report)
    uploader = next((u for u in people if u.role == Role.MEMBER), chro)
    await _documents(session, company, uploader, workflows, people, storage_dir, report)
    await _simulation(session, company, chro, now, report)


async def _workflows(
    session: AsyncSession, company: Company, chro: User | None, report: SeedReport
) -> list[Workflow]:
    wanted = TENANT_WORKFLOWS[company.name]
    existing = {
        w.name: w
        for w in (
            await session.execute(
                select(Workflow).where(
                    Workflow.company_id == company.id, Workflow.name.in_(list(wanted))
                )
            )
        ).scalars()
    }
    new = []
    for name, status in wanted.items():
        if name in existing:
            continue
        spec = WORKFLOW_CATALOGUE[name]
        steps = [
            {"name": step, "minutes": minutes, "automation_score": score}
            for step, minutes, score in spec.steps
        ]
        new.append(
            Workflow(
                company_id=company.id,
                name=name,
                department=spec.department,
                description=spec.description,
                status=status,
                steps=steps,
                automation_potential=round(automation_potential(steps), 4),
                created_by=chro.id if chro else None,
            )
        )
    session.add_all(new)
    await session.flush()
    _count(report, "workflows", len(new))
    return sorted([*existing.values(), *new], key=lambda w: w.name)


async def _runs(
    session: AsyncSession,
    company: Company,
    workflows: Sequence[Workflow],
    people: Sequence[User],
    now: datetime,
    report: SeedReport,
) -> None:
    """Runs for each workflow that has none yet: popularity-weighted, more of them lately,
    mostly completed, by people of the workflow's department more often than not."""
    has_runs = set(
        (
            await session.execute(
                select(UserWorkflowHistory.workflow_id)
                .where(UserWorkflowHistory.workflow_id.in_([w.id for w in workflows]))
                .group_by(UserWorkflowHistory.workflow_id)
            )
        ).scalars()
    )
    runnable = [w for w in workflows if w.status != WorkflowStatus.DRAFT]
    weights = {w.name: WORKFLOW_CATALOGUE[w.name].popularity for w in runnable}
    total_weight = sum(weights.values()) or 1
    rows: list[dict[str, Any]] = []
    for workflow in runnable:
        if workflow.id in has_runs:
            continue
        count = round(TENANT_RUNS[company.name] * weights[workflow.name] / total_weight)
        rows.extend(_workflow_runs(company, workflow, people, count, now))
    if rows:
        await session.execute(insert(UserWorkflowHistory), rows)
    _count(report, "workflow runs", len(rows))


def _workflow_runs(
    company: Company, workflow: Workflow, people: Sequence[User], count: int, now: datetime
) -> list[dict[str, Any]]:
    rng = _rng(company.name, workflow.name, "runs")
    insiders = [u for u in people if u.department == workflow.department] or list(people)
    minutes = sum(step["minutes"] for step in workflow.steps)
    archived = workflow.status == WorkflowStatus.ARCHIVED
    rows = []
    for _ in range(count):
        # random() ** 1.6 leans towards 0: more runs lately, as adoption of the platform grows.
        days_ago = 0.02 + (HISTORY_DAYS - 0.02) * rng.random() ** 1.6
        if archived:
            days_ago = ARCHIVED_BEFORE_DAYS + (HISTORY_DAYS - ARCHIVED_BEFORE_DAYS) * rng.random()
        user = rng.choice(insiders) if rng.random() < 0.75 else rng.choice(people)
        draw = rng.random()
        status = RunStatus.COMPLETED if draw < 0.82 else RunStatus.ABANDONED
        if draw >= 0.95 and days_ago < 1:  # still in progress: only the most recent ones
            status = RunStatus.STARTED
        started = now - timedelta(days=days_ago)
        duration = None
        if status is RunStatus.COMPLETED:
            duration = round(minutes * 60 * rng.uniform(0.6, 1.4))
        elif status is RunStatus.ABANDONED:
            duration = round(minutes * 60 * rng.uniform(0.1, 0.6))
        # A run never ends in the future: the longest (month-end close) takes hours.
        if duration is not None:
            duration = min(duration, int((now - started).total_seconds()))
        rows.append(
            {
                "user_id": user.id,
                "workflow_id": workflow.id,
                "company_id": company.id,
                "status": status,
                "started_at": started,
                "completed_at": None if duration is None else started + timedelta(seconds=duration),
                "duration_seconds": duration,
            }
        )
    return rows


async def _documents(
    session: AsyncSession,
    company: Company,
    uploader: User | None,
    workflows: Sequence[Workflow],
    people: Sequence[User],
    storage_dir: Path,
    report: SeedReport,
) -> None:
    specs = DOCUMENTS[: TENANT_DOCUMENTS[company.name]]
    existing = set(
        (
            await session.execute(
                select(Document.title).where(
                    Document.tenant_id == company.id, Document.title.in_([d.title for d in specs])
                )
            )
        ).scalars()
    )
    storage = FileStorage(storage_dir)
    new = []
    for spec in specs:
        if spec.title in existing:
            continue
        rng = _rng(company.name, spec.title, "document")
        key = f"{company.id}/{uuid.UUID(int=rng.getrandbits(128), version=4).hex}"
        data = _document_bytes(spec, company, workflows, people, rng)
        await anyio.to_thread.run_sync(_write_file, storage.path(key), data)
        new.append(
            Document(
                tenant_id=company.id,
                uploaded_by=uploader.id if uploader else None,
                title=spec.title,
                filename=spec.filename,
                content_type=spec.content_type,
                size_bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                storage_key=key,
                status=spec.status,
            )
        )
    session.add_all(new)
    await session.flush()
    _count(report, "documents", len(new))


def _write_file(path: Path, data: bytes) -> None:
    """Write as common/storage.py does: a staged `.part` file renamed into place, so the
    storage never holds a half-written file under a real key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + PART_SUFFIX)
    staged.write_bytes(data)
    os.replace(staged, path)


def _document_bytes(
    spec: DocumentSpec,
    company: Company,
    workflows: Sequence[Workflow],
    people: Sequence[User],
    rng: random.Random,
) -> bytes:
    if spec.filename == "employee-directory.csv":
        lines = ["email,full_name,department,job_title"]
        lines += [
            f"{u.email},{u.full_name},{u.department or ''},{u.job_title or ''}" for u in people
        ]
    elif spec.filename == "workflow-inventory.csv":
        lines = ["workflow,department,status,step,minutes,automation_score"]
        lines += [
            f"{w.name},{w.department},{w.status},{s['name']},{s['minutes']},{s['automation_score']}"
            for w in workflows
            for s in w.steps
        ]
    elif spec.filename == "skills-survey.csv":
        lines = ["department,skill,respondents,mean_proficiency_1_to_5"]
        lines += [
            f"{department},{skill},{rng.randint(3, 40)},{rng.uniform(1.5, 4.5):.1f}"
            for department in sorted({u.department for u in people if u.department})
            for skill in SKILLS
        ]
    elif spec.filename == "ai-adoption-policy.txt":
        lines = [
            f"{company.name}: AI adoption policy",
            "",
            "1. Every automation starts from a catalogued workflow and a named owner.",
            "2. People stay accountable for decisions; assistants prepare, people approve.",
            "3. No personal data leaves approved systems.",
            "4. Each department reviews its automation scores every quarter.",
        ]
    else:
        lines = [
            f"{company.name}: quarterly workforce report",
            "",
            f"Active people on the platform: {len(people)}",
            f"Catalogued workflows: {len(workflows)}",
            f"Share of work judged automatable: {rng.uniform(0.3, 0.5):.0%}",
        ]
    return ("\n".join(lines) + "\n").encode()


async def _simulation(
    session: AsyncSession, company: Company, chro: User | None, now: datetime, report: SeedReport
) -> None:
    found = (
        await session.execute(
            select(Simulation.id).where(
                Simulation.company_id == company.id, Simulation.name == SIMULATION_NAME
            )
        )
    ).first()
    if found is not None:
        _count(report, "simulations", 0)
        return
    parameters = SimulationParametersInput(
        **SIMULATION_PARAMETERS, hourly_cost=TENANT_HOURLY_COST[company.name]
    )
    await run_simulation(
        session,
        company_id=company.id,
        created_by=chro.id if chro else None,
        name=SIMULATION_NAME,
        parameters=parameters,
        now=now,
    )
    _count(report, "simulations", 1)


async def _company(
    session: AsyncSession, name: str, report: SeedReport, **values: object
) -> Company:
    found = (
        await session.execute(select(Company).where(Company.name == name))
    ).scalar_one_or_none()
    if found is not None:
        if not found.email_domains and values.get("email_domains"):
            found.email_domains = values["email_domains"]  # seeded before companies had them
        return found
    company = Company(name=name, slug=slugify(name), **values)
    session.add(company)
    await session.flush()
    report.companies += 1
    return company


async def _users(session: AsyncSession, candidates: list[User], report: SeedReport) -> None:
    emails = [u.email for u in candidates]
    existing = set(
        (await session.execute(select(User.email).where(User.email.in_(emails)))).scalars()
    )
    new = [u for u in candidates if u.email not in existing]
    session.add_all(new)
    await session.flush()
    report.users += len(new)


async def seed(
    session: AsyncSession,
    scale: Scale,
    storage_dir: Path | None = None,
    now: datetime | None = None,
) -> SeedReport:
    """Create the data of `scale` that is not there yet. The caller commits.

    `storage_dir` receives the demo documents' bytes (default: the configured
    `settings.storage_dir`); `now` anchors the demo history (default: the current time).
    """
    rng = random.Random(SEED)
    report = SeedReport()
    demo_hash = await hash_password(DEMO_PASSWORD)
    companies = {
        name: await _company(
            session,
            name,
            report,
            industry=i,
            country=c,
            employee_count=n,
            email_domains=DEMO_DOMAINS[name],
        )
        for name, (i, c, n) in DEMO_COMPANIES.items()
    }
    extra_companies, users_per_company = SCALE_SIZES[scale]
    for n in range(extra_companies):
        name = f"Sample Company {n + 1:03d}"
        companies[name] = await _company(
            session,
            name,
            report,
            industry=rng.choice(INDUSTRIES),
            country=rng.choice(COUNTRIES),
            employee_count=rng.randint(50, 5000),
            email_domains=[f"{slugify(name)}.example"],
        )
    candidates = [
        User(
            company_id=companies[login.company].id,
            email=login.email,
            full_name=f"Demo {login.role.title()} ({login.company})",
            department="HR" if login.role != Role.ADMIN else "Platform",
            job_title={"admin": "Platform operator", "chro": "Chief HR Officer"}.get(
                login.role, "Analyst"
            ),
            role=login.role,
            hashed_password=demo_hash,
        )
        for login in DEMO_LOGINS
    ]
    for name, company in companies.items():
        if name == "Etter Platform":
            continue
        domain = f"{company.slug}.example"
        for n in range(users_per_company):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            candidates.append(
                User(
                    company_id=company.id,
                    email=f"{first}.{last}.{n}@{domain}".lower(),
                    full_name=f"{first} {last}",
                    department=rng.choice(DEPARTMENTS),
                    job_title=rng.choice(["Analyst", "Engineer", "Manager", "Specialist"]),
                    role=Role.MEMBER,
                    hashed_password=demo_hash,
                )
            )
    await _users(session, candidates, report)
    now = now or utcnow()
    storage_dir = storage_dir if storage_dir is not None else get_settings().storage_dir
    for name in DEMO_TENANTS:
        await _seed_demo_tenant(session, companies[name], report, now, storage_dir)
    return report


async def is_empty(session: AsyncSession) -> bool:
    return (await session.execute(select(func.count()).select_from(Company))).scalar_one() == 0
