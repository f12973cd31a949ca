"""The master company catalogue: readable by every user, written by the platform admin."""

from __future__ import annotations

import re
import unicodedata

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.exceptions import PermissionDeniedError
from common.pagination import PageResult, PaginationParams, paginate
from models import Company, User
from schemas.base import Page
from schemas.companies import Company as CompanyRead
from schemas.companies import CompanyCreate, CompanyUpdate
from services import cache_invalidation
from services.base_service import BaseService, like_contains, of_tenant
from services.cache_invalidation import Tags
from services.cache_service import SHARED_SCOPE, CacheName, cached

security_log = structlog.get_logger("etter.security")


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
        """An admin's change; flipping `is_active` locks the company's users out (or lets them
        back in) with their next request: their cached principals are dropped."""
        self.require_admin()
        company = await self.get(company_id)
        changes = data.changes()
        access_changed = "is_active" in changes and changes["is_active"] != company.is_active
        if access_changed and self.is_own_company(company.id):
            raise PermissionDeniedError("You cannot deactivate your own company.")
        for field, value in changes.items():
            setattr(company, field, value)
        await self.flush("Another company already has that name.")
        cache_invalidation.company_changed(self.cache, company.id)
        if access_changed:
            user_ids = (
                await self.session.execute(select(User.id).where(of_tenant(User, company.id)))
            ).scalars()
            cache_invalidation.company_access_changed(self.cache, company.id, list(user_ids))
            security_log.warning(
                "company_activated" if company.is_active else "company_deactivated",
                target_company_id=company.id,
                by_user_id=self.principal.user_id,
            )
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


async def get_or_create_company(
    session: AsyncSession, name: str, country: str = "US", email_domain: str | None = None
) -> Company:
    """For the command-line tools: the company called `name`, created when missing. A new
    company's `email_domains` is `email_domain` (the first user's), so its CHRO can add staff."""
    found = (
        await session.execute(select(Company).where(Company.name == name))
    ).scalar_one_or_none()
    if found is not None:
        return found
    company = Company(
        name=name,
        slug=await free_slug(session, name),
        country=country,
        email_domains=[email_domain] if email_domain else [],
    )
    session.add(company)
    await session.flush()
    return company
