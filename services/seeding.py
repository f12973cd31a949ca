"""Deterministic demo and sample data. Idempotent: a second run adds nothing.

Each scale is a fixed random seed and fixed counts, so every run (and every machine) produces
the same rows. Rows are looked up by their natural keys (company name, user email) before they
are created, which is what makes a repeated run a no-op.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import Role
from common.security import hash_password
from models import Company, User
from services.companies import slugify

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
SCALE_SIZES = {Scale.DEMO: (0, 12), Scale.SMALL: (8, 60)}  # extra companies, users per company


@dataclass
class SeedReport:
    companies: int = 0
    users: int = 0
    extra: dict[str, int] = field(default_factory=dict)


async def _company(
    session: AsyncSession, name: str, report: SeedReport, **values: object
) -> Company:
    found = (
        await session.execute(select(Company).where(Company.name == name))
    ).scalar_one_or_none()
    if found is not None:
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


async def seed(session: AsyncSession, scale: Scale) -> SeedReport:
    """Create the data of `scale` that is not there yet. The caller commits."""
    rng = random.Random(SEED)
    report = SeedReport()
    demo_hash = await hash_password(DEMO_PASSWORD)
    companies = {
        name: await _company(session, name, report, industry=i, country=c, employee_count=n)
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
                    role=Role.MEMBER.value,
                    hashed_password=demo_hash,
                )
            )
    await _users(session, candidates, report)
    return report


async def is_empty(session: AsyncSession) -> bool:
    return (await session.execute(select(func.count()).select_from(Company))).scalar_one() == 0
