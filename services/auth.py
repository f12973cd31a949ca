"""Logging in and recognising the caller from a bearer token."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.exceptions import AuthenticationError
from common.principal import Principal
from common.security import (
    IssuedToken,
    TokenClaims,
    create_access_token,
    hash_password,
    needs_rehash,
    verify_password,
)
from models import User
from schemas.users import User as UserRead
from services.cache_invalidation import Tags
from services.cache_service import CacheName, RequestCache, cached, user_scope
from settings.config import Settings

# One message for every failed login, whatever the cause, so that nobody can learn which
# emails have accounts or which accounts are deactivated.
LOGIN_FAILED = "Incorrect email or password."
TOKEN_INVALID = "The access token is missing, invalid or expired."


class AuthService:
    def __init__(
        self, session: AsyncSession, settings: Settings, cache: RequestCache | None = None
    ) -> None:
        self.session = session
        self.settings = settings
        self.cache = cache

    async def login(self, email: str, password: str) -> IssuedToken:
        email = email.strip().lower()
        user = None
        if "\x00" not in email and len(email) <= 320:
            statement = select(User).where(User.email == email)
            user = (await self.session.execute(statement)).scalar_one_or_none()
        # Always verify a hash, even without a user, so the answer takes as long either way.
        valid = await verify_password(user.hashed_password if user else None, password)
        if user is None or not valid or not user.is_active:
            raise AuthenticationError(LOGIN_FAILED)
        if needs_rehash(user.hashed_password):
            user.hashed_password = await hash_password(password)
        user.last_login_at = datetime.now(UTC)
        if self.cache is not None:  # the cached record shows the login time
            self.cache.invalidate(Tags.user(user.id))
        return create_access_token(self.settings, user.id)

    async def authenticate(self, claims: TokenClaims | None) -> tuple[Principal, UserRead]:
        """The caller of a verified token (`TokenVerifier.verify`), as the services see it and
        as `/auth/me` shows it; 401 for no token, an invalid one, or an inactive user."""
        if claims is None:
            raise AuthenticationError(TOKEN_INVALID)
        user = await self.active_user(claims.user_id)
        if user is None:
            raise AuthenticationError(TOKEN_INVALID)
        principal = Principal(
            user_id=user.id, company_id=user.company_id, role=user.role, email=user.email
        )
        return principal, user

    # Cached so that an authenticated request does not read the users table: `/auth/me` is
    # answered from this entry, every other route builds its `Principal` from it. A user's
    # change (role, deactivation, login time) drops the entry when it commits
    # (cache_invalidation.user_changed, and `login` above), and unknown or deactivated users
    # are cached as None too.
    @cached(
        CacheName.PRINCIPAL,
        scope=lambda self, user_id: user_scope(user_id),
        tags=lambda self, user_id: [Tags.user(user_id)],
    )
    async def active_user(self, user_id: int) -> UserRead | None:
        """The caller's record; None for an unknown or deactivated user."""
        user = await self.session.get(User, user_id)
        if user is None or not user.is_active:
            return None
        return UserRead.model_validate(user)
