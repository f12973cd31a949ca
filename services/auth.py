"""Logging in, recognising the caller from a bearer token, and revoking tokens.

A token is accepted only while its user is active, the user's company is active, and the
user's credentials version is the one the token was issued under (claim `cv`): a password
change, a deactivation and "log out everywhere" bump the version, so every earlier token stops
working at once (the principal cache entry is dropped with the change).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.exceptions import AuthenticationError, FieldError, ValidationFailedError
from common.principal import Principal
from common.security import (
    IssuedToken,
    TokenClaims,
    create_access_token,
    hash_password,
    needs_rehash,
    verify_password,
)
from models import Company, User
from schemas.users import User as UserRead
from services import cache_invalidation
from services.cache_invalidation import Tags
from services.cache_service import CacheName, RequestCache, cached, user_scope
from settings.config import Settings

# One message for every failed login, whatever the cause, so that nobody can learn which
# emails have accounts or which accounts are deactivated.
LOGIN_FAILED = "Incorrect email or password."
TOKEN_INVALID = "The access token is missing, invalid or expired."

# Security events (SECURITY.md): logins, password changes, revocations, role and access changes.
security_log = structlog.get_logger("etter.security")


def account_key(settings: Settings, email: str) -> str:
    """A login name as the security log names it: keyed (HMAC with the secret key), so events of
    one account can be correlated but the log does not hold, or let anyone test for, the address."""
    normalised = email.strip().lower().encode("utf-8", "replace")
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, normalised, hashlib.sha256).hexdigest()[:24]


class AuthService:
    def __init__(
        self, session: AsyncSession, settings: Settings, cache: RequestCache | None = None
    ) -> None:
        self.session = session
        self.settings = settings
        self.cache = cache

    async def login(self, email: str, password: str) -> IssuedToken:
        email = email.strip().lower()
        user, company_active = None, False
        if "\x00" not in email and len(email) <= 320:
            statement = (
                select(User, Company.is_active).join(User.company).where(User.email == email)
            )
            row = (await self.session.execute(statement)).one_or_none()
            if row is not None:
                user, company_active = row
        # Always verify a hash, even without a user, so the answer takes as long either way.
        valid = await verify_password(user.hashed_password if user else None, password)
        if user is None or not valid or not user.is_active or not company_active:
            security_log.warning(
                "login_failed",
                account=account_key(self.settings, email),
                reason="unknown_account"
                if user is None
                else "bad_password"
                if not valid
                else "inactive",
            )
            raise AuthenticationError(LOGIN_FAILED)
        if needs_rehash(user.hashed_password):
            user.hashed_password = await hash_password(password)
        user.last_login_at = datetime.now(UTC)
        if self.cache is not None:  # the cached record shows the login time
            self.cache.invalidate(Tags.user(user.id))
        security_log.info("login_succeeded", user_id=user.id, company_id=user.company_id)
        return create_access_token(self.settings, user.id, user.credentials_version)

    async def authenticate(self, claims: TokenClaims | None) -> tuple[Principal, UserRead]:
        """The caller of a verified token (`TokenVerifier.verify`), as the services see it and
        as `/auth/me` shows it; 401 for no token, an invalid one, or an inactive user."""
        if claims is None:
            raise AuthenticationError(TOKEN_INVALID)
        found = await self.active_user(claims.user_id)
        if found is None or found[1] != claims.credentials_version:
            raise AuthenticationError(TOKEN_INVALID)
        user, version = found
        principal = Principal(
            user_id=user.id,
            company_id=user.company_id,
            role=user.role,
            email=user.email,
            credentials_version=version,
        )
        return principal, user

    async def change_password(
        self, principal: Principal, current_password: str, new_password: str
    ) -> IssuedToken:
        """The caller's own password, the current one required; every earlier token stops
        working and a fresh one is returned."""
        user = await self._user(principal)
        if not await verify_password(user.hashed_password, current_password):
            security_log.warning("password_change_refused", user_id=user.id)
            raise ValidationFailedError(
                "The current password is not correct.",
                errors=[FieldError("body.current_password", "is not your current password")],
            )
        user.hashed_password = await hash_password(new_password)
        revoke_tokens(user, self.cache)
        await self.session.flush()
        security_log.info("password_changed", user_id=user.id, by_user_id=user.id)
        return create_access_token(self.settings, user.id, user.credentials_version)

    async def logout_everywhere(self, principal: Principal) -> None:
        """Revoke every token issued to the caller so far, the one of this request included."""
        user = await self._user(principal)
        revoke_tokens(user, self.cache)
        await self.session.flush()
        security_log.info("tokens_revoked", user_id=user.id, by_user_id=user.id)

    async def _user(self, principal: Principal) -> User:
        user = await self.session.get(User, principal.user_id, with_for_update=True)
        if user is None:  # deleted since the token was checked
            raise AuthenticationError(TOKEN_INVALID)
        return user

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
    async def active_user(self, user_id: int) -> tuple[UserRead, int] | None:
        """The caller's record and credentials version; None for an unknown or deactivated
        user, or a user of a deactivated company."""
        # One statement: the user with its company's flag (a miss must cost what it did).
        found = (
            await self.session.execute(
                select(User, Company.is_active).join(User.company).where(User.id == user_id)
            )
        ).one_or_none()
        if found is None:
            return None
        user, company_active = found
        if not user.is_active or not company_active:
            return None
        return UserRead.model_validate(user), user.credentials_version


def revoke_tokens(user: User, cache: RequestCache | None) -> None:
    """Make every token issued to `user` so far invalid (with the next request, everywhere)."""
    user.credentials_version += 1
    cache_invalidation.user_changed(cache, user.company_id, user.id)
