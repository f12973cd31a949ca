"""Auth dependencies and the service aliases that routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from common.principal import Principal
from common.request_deps import SessionDep, SettingsDep
from common.structured_logger import bind_user
from common.transactions import after_commit
from schemas.users import User
from services.auth import AuthService
from services.cache_service import RequestCache
from services.companies import CompanyService
from services.users import UserService

API_PREFIX = "/api/v1"

# auto_error=False: a missing token is answered by our own 401 problem, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/auth/token", auto_error=False)


REQUEST_CACHE_STATE_KEY = "request_cache"
ACCOUNT_STATE_KEY = "account"


async def get_request_cache(request: Request) -> RequestCache:
    """The request's view of the app's cache; its queued invalidations run after the commit.

    Here rather than in common/request_deps.py: `common/` must not import `services/`.
    """
    state = request.scope.setdefault("state", {})
    found: RequestCache | None = state.get(REQUEST_CACHE_STATE_KEY)
    if found is None:
        found = state[REQUEST_CACHE_STATE_KEY] = RequestCache(
            getattr(request.app.state, "cache", None)
        )
        after_commit(request, found.flush)
    return found


CacheDep = Annotated[RequestCache, Depends(get_request_cache)]


async def get_auth_service(
    session: SessionDep, settings: SettingsDep, cache: CacheDep
) -> AuthService:
    return AuthService(session, settings, cache)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_principal(
    request: Request,
    auth: AuthServiceDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    # The app's shared verifier: the rate limiter has usually checked this token already.
    claims = request.app.state.tokens.verify(token) if token else None
    principal, account = await auth.authenticate(claims)
    # Lets the access log and error reports name the caller, and every later log event too.
    state = request.scope.setdefault("state", {})
    state["principal"] = principal
    state[ACCOUNT_STATE_KEY] = account
    bind_user(principal.user_id, principal.company_id)
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


async def get_account(request: Request, principal: CurrentUser) -> User:
    """The caller's record, as `get_principal` found it (from the cache: no SQL)."""
    account: User = request.scope["state"][ACCOUNT_STATE_KEY]
    return account


CurrentAccount = Annotated[User, Depends(get_account)]


async def get_company_service(
    session: SessionDep, principal: CurrentUser, cache: CacheDep
) -> CompanyService:
    return CompanyService(session, principal, cache)


async def get_user_service(
    session: SessionDep, principal: CurrentUser, cache: CacheDep
) -> UserService:
    return UserService(session, principal, cache)


CompanyServiceDep = Annotated[CompanyService, Depends(get_company_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
