"""The master company catalogue: readable by every user, written by the platform admin."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.pagination import PageResult, PaginationParams, paginate
from models import Company
from schemas.companies import CompanyCreate, CompanyUpdate
from services.base_service import BaseService, like_contains


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:180] or "company"


class CompanyService(BaseService[Company]):
    model = Company
    tenant_column = None  # the catalogue is shared by all tenants
    label = "Company"

    async def list(
        self,
        params: PaginationParams,
        q: str | None = None,
        industry: str | None = None,
        country: str | None = None,
    ) -> PageResult:
        statement = self.readable().order_by(Company.name, Company.id)
        if q:
            statement = statement.where(func.lower(Company.name).like(like_contains(q.lower())))
        if industry:
            statement = statement.where(Company.industry == industry)
        if country:
            statement = statement.where(Company.country == country.upper())
        return await paginate(self.session, statement, params)

    async def create(self, data: CompanyCreate) -> Company:
        self.require_admin()
        company = Company(**data.model_dump(), slug=await self._free_slug(data.name))
        self.session.add(company)
        await self.flush(f"A company named {data.name!r} already exists.")
        return company

    async def update(self, company_id: int, data: CompanyUpdate) -> Company:
        self.require_admin()
        company = await self.get(company_id)
        for field, value in data.changes().items():
            setattr(company, field, value)
        await self.flush("Another company already has that name.")
        return company

    async def _free_slug(self, name: str) -> str:
        base = slugify(name)
        taken = set(
            (
                await self.session.execute(
                    select(Company.slug).where(Company.slug.like(base + "%"))
                )
            ).scalars()
        )
        slug, n = base, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        return slug


async def get_or_create_company(session: AsyncSession, name: str, country: str = "US") -> Company:
    """For the command-line tools: the company called `name`, created when missing."""
    found = (
        await session.execute(select(Company).where(Company.name == name))
    ).scalar_one_or_none()
    if found is not None:
        return found
    company = Company(name=name, slug=slugify(name), country=country)
    session.add(company)
    await session.flush()
    return company
