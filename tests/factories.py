"""Small async factories for test data, and a two-tenant `World` for the role/tenancy matrix."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import Role
from common.security import create_access_token, hash_password_sync
from models import Company, User
from services.companies import slugify
from settings.config import Settings

PASSWORD = "correct-horse-battery"
_HASH = hash_password_sync(PASSWORD)  # hashed once: argon2 is slow by design
_sequence = itertools.count(1)


async def create_company(session: AsyncSession, **values: Any) -> Company:
    n = next(_sequence)
    name = values.pop("name", f"Company {n}")
    values.setdefault("country", "US")
    values.setdefault("industry", "Software")
    values.setdefault("email_domains", [f"{slugify(name)}.example"])
    company = Company(name=name, slug=slugify(name), **values)
    session.add(company)
    await session.flush()
    return company


async def create_user(
    session: AsyncSession, company: Company, role: Role = Role.MEMBER, **values: Any
) -> User:
    n = next(_sequence)
    values.setdefault("email", f"user{n}@{company.slug}.example")
    values.setdefault("full_name", f"User {n}")
    values.setdefault("department", "Engineering")
    user = User(company_id=company.id, role=role.value, hashed_password=_HASH, **values)
    session.add(user)
    await session.flush()
    return user


def bearer(settings: Settings, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_access_token(settings, user.id).token}"}


@dataclass
class World:
    settings: Settings
    platform: Company
    tenant: Company
    other_tenant: Company
    admin: User
    chro: User
    member: User
    other_member: User  # a second member of `tenant`
    other_chro: User  # of `other_tenant`
    outsider: User  # a member of `other_tenant`

    def auth(self, user: User) -> dict[str, str]:
        return bearer(self.settings, user)

    def as_role(self, name: str) -> dict[str, str]:
        """Headers for `anonymous` or any user of the world by attribute name (admin, chro,
        member, other_member, other_chro, outsider)."""
        if name == "anonymous":
            return {}
        return self.auth(getattr(self, name))


async def build_world(session: AsyncSession, settings: Settings) -> World:
    platform = await create_company(session, name="Etter Platform Test")
    # Tenant A's CHRO may create addresses at example.com too (the user tests' new people).
    tenant = await create_company(
        session, name="Tenant A", email_domains=["tenant-a.example", "example.com"]
    )
    other = await create_company(session, name="Tenant B")
    return World(
        settings=settings,
        platform=platform,
        tenant=tenant,
        other_tenant=other,
        admin=await create_user(session, platform, Role.ADMIN, full_name="Ada Admin"),
        chro=await create_user(session, tenant, Role.CHRO, full_name="Chris Chro", department="HR"),
        member=await create_user(session, tenant, Role.MEMBER, full_name="Mia Member"),
        other_member=await create_user(session, tenant, Role.MEMBER, full_name="Max Member"),
        other_chro=await create_user(session, other, Role.CHRO, full_name="Olga Chro"),
        outsider=await create_user(session, other, Role.MEMBER, full_name="Oscar Outsider"),
    )
