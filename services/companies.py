"""The master company catalogue: readable by every user, written by the platform admin."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.pagination import PageResult, PaginationParams, paginate
from models import Company
from schemas.base import Page
from schemas.companies import Company as CompanyRead
from schemas.companies import CompanyCreate, CompanyUpdate
from services import cache_invalidation
from services.base_service import BaseService, like_contains
from services.cache_invalidation import Tags
from services.cache_service import SHARED_SCOPE, CacheName, cached


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:180] or "company"


class CompanyService(BaseService[Company]):
    model = Company
    tenant_scoped = False  # the catalogue is shared by all tenants
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
            # Explicit ESCAPE: SQLite, unlike PostgreSQL, has no default escape character.
            pattern = like_contains(q.lower())
            statement = statement.where(func.lower(Company.name).like(pattern, escape="\\"))
        if industry:
            statement = statement.where(Company.industry == industry)
        if country:
            statement = statement.where(Company.country == country.upper())
        return await paginate(self.session, statement, params)

    # The catalogue reads the same for every caller (no tenant filter), hence the shared scope.
    @cached(
        CacheName.COMPANIES,
        scope=SHARED_SCOPE,
        tags=lambda self, **_: [Tags.COMPANIES],
        key=lambda self, params, q, industry, country: (
            params.page,
            params.page_size,
            q.lower() if q else None,
            industry,
            country.upper() if country else None,
        ),
    )
    async def catalogue(
        self,
        params: PaginationParams,
        q: str | None = None,
        industry: str | None = None,
        country: str | None = None,
    ) -> Page[CompanyRead]:
        """`list()` as the API shows it."""
        result = await self.list(params, q=q, industry=industry, country=country)
        return Page[CompanyRead](
            items=[CompanyRead.model_validate(company) for company in result.items],
            total=result.total,
            page=result.page,
            page_size=result.page_size,
        )

    @cached(
        CacheName.COMPANIES,
        scope=SHARED_SCOPE,
        tags=lambda self, company_id: [Tags.company(company_id)],
    )
    async def detail(self, company_id: int) -> CompanyRead:
        """`get()` as the API shows it."""
        return CompanyRead.model_validate(await self.get(company_id))

    async def create(self, data: CompanyCreate) -> Company:
        self.require_admin()
        company = Company(**data.model_dump(), slug=await free_slug(self.session, data.name))
        self.session.add(company)
        await self.flush(f"A company named {data.name!r} already exists.")
        cache_invalidation.company_changed(self.cache, company.id)
        return company

    async def update(self, company_id: int, data: CompanyUpdate) -> Company:
        self.require_admin()
        company = await self.get(company_id)
        for field, value in data.changes().items():
            setattr(company, field, value)
        await self.flush("Another company already has that name.")
        cache_invalidation.company_changed(self.cache, company.id)
        return company


async def free_slug(session: AsyncSession, name: str) -> str:
    """`name`'s slug, numbered when another company has it already ("acme", "acme-2", ...).

    Names are unique but slugs are not implied by that: "Acme" and "ACME" share one.
    """
    base = slugify(name)
    statement = select(Company.slug).where(Company.slug.like(base + "%"))
    taken = set((await session.execute(statement)).scalars())
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
    company = Company(name=name, slug=await free_slug(session, name), country=country)
    session.add(company)
    await session.flush()
    return company
