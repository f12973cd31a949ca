"""Users of a company: listing, autocomplete, and the chro/admin writes."""

from __future__ import annotations

import structlog
from sqlalchemy import ColumnElement, func, or_, select

from common.enums import Role
from common.exceptions import FieldError, PermissionDeniedError, ValidationFailedError
from common.pagination import PageResult, PaginationParams, paginate
from common.security import hash_password
from models import Company, User
from schemas.users import UserCreate, UserSuggestion, UserUpdate
from services import cache_invalidation
from services.auth import revoke_tokens
from services.base_service import BaseService, like_prefix
from services.cache_invalidation import Tags
from services.cache_service import CacheName, cached, tenant_scope

AUTOCOMPLETE_MAX = 20

security_log = structlog.get_logger("etter.security")


def _starts_with(q: str) -> ColumnElement[bool]:
    """Name or email starts with `q`, case-insensitively; `%` and `_` in `q` match themselves.

    The ESCAPE clause is explicit because SQLite, unlike PostgreSQL, has no default escape
    character: without it `like_prefix`'s backslashes would be literal there.
    """
    pattern = like_prefix(q.lower())
    return or_(
        func.lower(User.full_name).like(pattern, escape="\\"),
        User.email.like(pattern, escape="\\"),
    )


class UserService(BaseService[User]):
    model = User
    label = "User"

    async def list(
        self,
        params: PaginationParams,
        department: str | None = None,
        role: Role | None = None,
        q: str | None = None,
        company_id: int | None = None,
    ) -> PageResult:
        statement = self.readable(company_id).order_by(User.full_name, User.id)
        if department:
            statement = statement.where(User.department == department)
        if role:
            statement = statement.where(User.role == role)
        if q:
            statement = statement.where(_starts_with(q))
        return await paginate(self.session, statement, params)

    async def autocomplete(self, q: str, limit: int) -> list[User]:
        """Active users of the caller's own company whose name or email starts with `q`."""
        statement = (
            select(User)
            .where(self.own_company(User), User.is_active)
            .where(_starts_with(q))
            .order_by(User.full_name, User.id)
            .limit(min(limit, AUTOCOMPLETE_MAX))
        )
        return list((await self.session.execute(statement)).scalars())

    @cached(
        CacheName.AUTOCOMPLETE,
        scope=lambda self, **_: tenant_scope(self.principal.company_id),
        tags=lambda self, **_: [Tags.company_users(self.principal.company_id)],
        key=lambda self, q, limit: (q.lower(), min(limit, AUTOCOMPLETE_MAX)),
    )
    async def suggestions(self, q: str, limit: int) -> list[UserSuggestion]:
        """`autocomplete()` as the API shows it."""
        return [UserSuggestion.model_validate(user) for user in await self.autocomplete(q, limit)]

    async def create(self, data: UserCreate) -> User:
        self.require_chro_or_admin()
        self._check_role_grant(data.role)
        company_id = await self.company_for_write(data.company_id)
        await self._check_email_domain(company_id, data.email)
        user = User(
            company_id=company_id,
            email=data.email,
            full_name=data.full_name,
            department=data.department,
            job_title=data.job_title,
            role=data.role,
            hashed_password=await hash_password(data.password),
        )
        self.session.add(user)
        await self.flush("A user with this email already exists.")
        cache_invalidation.user_changed(self.cache, user.company_id, user.id)
        return user

    async def update(self, user_id: int, data: UserUpdate) -> User:
        user = await self.get(user_id)
        self.require_chro_or_admin()
        self._check_may_manage(user)
        changes = data.changes()
        if "role" in changes:
            self._check_role_grant(data.role or Role.MEMBER)
        if user.id == self.principal.user_id and (
            changes.get("is_active") is False or changes.get("role", user.role) != user.role
        ):
            raise PermissionDeniedError("You cannot deactivate or demote your own account.")
        if "email" in changes and changes["email"] != user.email:
            await self._check_email_domain(user.company_id, changes["email"])
        events = self._security_events(user, changes)
        password = changes.pop("password", None)
        if password is not None:
            user.hashed_password = await hash_password(password)
        if password is not None or (changes.get("is_active") is False and user.is_active):
            revoke_tokens(user, self.cache)  # the user's earlier tokens stop working
        for field, value in changes.items():
            setattr(user, field, value)
        await self.flush("A user with this email already exists.")
        cache_invalidation.user_changed(self.cache, user.company_id, user.id)
        for event, fields in events:
            security_log.info(event, user_id=user.id, by_user_id=self.principal.user_id, **fields)
        return user

    async def deactivate(self, user_id: int) -> None:
        user = await self.get(user_id)
        self.require_chro_or_admin()
        self._check_may_manage(user)
        if user.id == self.principal.user_id:
            raise PermissionDeniedError("You cannot deactivate your own account.")
        if user.is_active:
            revoke_tokens(user, self.cache)
        user.is_active = False
        await self.flush("The user could not be deactivated.")
        cache_invalidation.user_changed(self.cache, user.company_id, user.id)
        security_log.info("user_deactivated", user_id=user.id, by_user_id=self.principal.user_id)

    async def _check_email_domain(self, company_id: int, email: str) -> None:
        """A CHRO creates addresses only in its company's `email_domains` (none set: none at
        all), so that no tenant can take, or probe for, another's addresses. The platform
        admin may use any address."""
        if self.principal.is_admin:
            return
        domains = (
            await self.session.execute(
                select(Company.email_domains).where(Company.id == company_id)
            )
        ).scalar_one()
        domain = email.rpartition("@")[2].lower()
        if domain not in (domains or []):
            allowed = ", ".join(domains) if domains else "none are set; ask the platform admin"
            raise ValidationFailedError(
                "The address is outside the company's email domains.",
                errors=[FieldError("body.email", f"must be in the company's domains ({allowed})")],
            )

    @staticmethod
    def _security_events(user: User, changes: dict[str, object]) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        role = changes.get("role")
        if role is not None and Role(role) != Role(user.role):
            events.append(("role_changed", {"old_role": user.role, "new_role": Role(role).value}))
        if "is_active" in changes and changes["is_active"] != user.is_active:
            events.append(("user_activated" if changes["is_active"] else "user_deactivated", {}))
        if changes.get("password") is not None:
            events.append(("password_changed", {}))
        return events

    def _check_role_grant(self, role: Role) -> None:
        if role is Role.ADMIN:
            self.require_admin()

    def _check_may_manage(self, user: User) -> None:
        if user.role is Role.ADMIN:
            self.require_admin()
