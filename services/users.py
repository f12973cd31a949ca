"""Users of a company: listing, autocomplete, and the chro/admin writes."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select

from common.enums import Role
from common.exceptions import PermissionDeniedError
from common.pagination import PageResult, PaginationParams, paginate
from common.security import hash_password
from models import User
from schemas.users import UserCreate, UserSuggestion, UserUpdate
from services import cache_invalidation
from services.base_service import BaseService, like_prefix
from services.cache_invalidation import Tags
from services.cache_service import CacheName, cached, tenant_scope

AUTOCOMPLETE_MAX = 20


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
        password = changes.pop("password", None)
        if password is not None:
            user.hashed_password = await hash_password(password)
        for field, value in changes.items():
            setattr(user, field, value)
        await self.flush("A user with this email already exists.")
        cache_invalidation.user_changed(self.cache, user.company_id, user.id)
        return user

    async def deactivate(self, user_id: int) -> None:
        user = await self.get(user_id)
        self.require_chro_or_admin()
        self._check_may_manage(user)
        if user.id == self.principal.user_id:
            raise PermissionDeniedError("You cannot deactivate your own account.")
        user.is_active = False
        await self.flush("The user could not be deactivated.")
        cache_invalidation.user_changed(self.cache, user.company_id, user.id)

    def _check_role_grant(self, role: Role) -> None:
        if role is Role.ADMIN:
            self.require_admin()

    def _check_may_manage(self, user: User) -> None:
        if user.role is Role.ADMIN:
            self.require_admin()
