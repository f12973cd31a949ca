"""What every domain service shares: the caller, the session, tenant scoping in one place.

This module is the only place in `services/` that writes a tenant predicate
(`tests/unit/services/test_tenant_scoping.py` fails on any other): `TENANT_COLUMNS` says which
column makes a row of each table belong to a company, `of_tenant()` builds the predicate, and
`readable()` / `tenant_filter()` start every query on tenant data already filtered by the
caller's company, so a service cannot forget the filter; an object of another tenant then
simply does not exist for the caller (404), never 403 and never its data.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.exceptions import (
    ConflictError,
    FieldError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)
from common.principal import Principal
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from models.base import Base
from settings.config import Settings

if TYPE_CHECKING:
    from services.cache_service import RequestCache

M = TypeVar("M", bound=Base)

# The column that makes a row belong to a company (a company is its own tenant).
TENANT_COLUMNS: dict[type[Base], str] = {
    Company: "id",
    User: "company_id",
    Workflow: "company_id",
    UserWorkflowHistory: "company_id",
    Simulation: "company_id",
    Document: "tenant_id",
}


def of_tenant(model: type[Base], company_id: int) -> ColumnElement[bool]:
    """`model`'s rows of company `company_id`, for a company the caller was authorised for."""
    column = getattr(model, TENANT_COLUMNS[model])
    return column == company_id


class BaseService(Generic[M]):
    model: ClassVar[type[Base]]
    # False for data every user may read (the company catalogue).
    tenant_scoped: ClassVar[bool] = True
    label: ClassVar[str] = "Object"

    def __init__(
        self, session: AsyncSession, principal: Principal, cache: RequestCache | None = None
    ) -> None:
        self.session = session
        self.principal = principal
        # Read by @cached methods and by the invalidation calls after writes; None: no caching.
        self.cache = cache

    @classmethod
    def for_request(
        cls, session: AsyncSession, principal: Principal, settings: Settings, cache: RequestCache
    ) -> Self:
        """The service as a request uses it (`api/deps.py`'s `ServiceDep`); a service that needs
        more of the settings than the session, caller and cache overrides this."""
        return cls(session, principal, cache)

    def tenant_filter(
        self,
        statement: Select[Any],
        company_id: int | None = None,
        model: type[Base] | None = None,
    ) -> Select[Any]:
        """Restrict `statement` to the caller's company (admin: all, or `company_id`), on the
        rows of `model` (default: the service's own)."""
        if not self.tenant_scoped:
            return statement
        model = model or self.model
        if not self.principal.is_admin:
            return statement.where(of_tenant(model, self.principal.company_id))
        if company_id is not None:
            return statement.where(of_tenant(model, company_id))
        return statement

    def own_company(self, model: type[Base]) -> ColumnElement[bool]:
        """`model`'s rows of the caller's own company, whatever the role (the admin included:
        for what the contract limits to one's own company, such as autocomplete)."""
        return of_tenant(model, self.principal.company_id)

    def is_own_company(self, company_id: int) -> bool:
        """Does an object of company `company_id` belong to the caller's own company?"""
        return company_id == self.principal.company_id

    def readable(self, company_id: int | None = None) -> Select[Any]:
        return self.tenant_filter(select(self.model), company_id)

    async def get(self, object_id: int) -> M:
        statement = self.readable().where(self.model.id == object_id)
        found = (await self.session.execute(statement)).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"{self.label} {object_id} does not exist.")
        return found  # type: ignore[return-value]

    async def lock(self, object_id: int) -> M:
        """`get()` under a row lock (FOR UPDATE on PostgreSQL) held until the transaction ends:
        what an edit checks against (If-Match) cannot change before the edit is written."""
        statement = (
            self.readable()
            .where(self.model.id == object_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found = (await self.session.execute(statement)).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"{self.label} {object_id} does not exist.")
        return found  # type: ignore[return-value]

    def uncached(self) -> Self:
        """This service reading straight from the database, never from the cache."""
        view = copy.copy(self)
        view.cache = None
        return view

    @staticmethod
    def require(allowed: bool, detail: str) -> None:
        if not allowed:
            raise PermissionDeniedError(detail)

    def require_chro_or_admin(self) -> None:
        self.require(self.principal.is_chro_or_admin, "This action needs the chro or admin role.")

    def require_admin(self) -> None:
        self.require(self.principal.is_admin, "This action needs the admin role.")

    async def company_for_write(self, requested: int | None) -> int:
        """The company a new object belongs to: the caller's own, unless the platform admin
        names another (which must exist: 422). Anyone else naming another company: 403."""
        if requested is None or requested == self.principal.company_id:
            return self.principal.company_id
        self.require(self.principal.is_admin, "Only the platform admin may act in another company.")
        if await self.session.get(Company, requested) is None:
            raise ValidationFailedError(
                "The request is not valid; see `errors`.",
                errors=[FieldError("body.company_id", "no company has this id")],
            )
        return requested

    async def flush(self, conflict_detail: str) -> None:
        """Flush pending writes; a unique-constraint violation becomes a 409, not a 500."""
        try:
            await self.session.flush()
        except IntegrityError as error:
            # The request's route rolls the whole transaction back when this propagates.
            raise ConflictError(conflict_detail) from error


def like_prefix(term: str) -> str:
    """A LIKE pattern matching values that start with `term`, wildcards in `term` escaped."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def like_contains(term: str) -> str:
    return "%" + like_prefix(term)
