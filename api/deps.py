"""What routes declare in their signatures: the caller, the request's cache, the services, and
the path and query aliases every resource shares.

Every dependency here is `async def`: a sync one would hop to the thread pool on every request.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer

from common.principal import Principal
from common.rate_limits import LoginFailures
from common.request_deps import SessionDep, SettingsDep
from common.structured_logger import bind_user
from common.transactions import after_commit
from common.validators import MAX_ID
from schemas.users import User
from services.auth import AuthService
from services.base_service import BaseService
from services.cache_service import RequestCache

API_PREFIX = "/api/v1"

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
# The admin's filter on the lists (and its choice of dashboard); ignored for everyone else.
CompanyFilter = Annotated[int | None, Query(ge=1, le=MAX_ID, description="admin only: one company")]

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
    """The one service that serves callers not yet authenticated (it authenticates them)."""
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


async def get_login_failures(request: Request) -> LoginFailures:
    """The per-account limit on failed logins, for the token route (`create_app` builds it)."""
    return request.app.state.login_failures


LoginFailuresDep = Annotated[LoginFailures, Depends(get_login_failures)]

S = TypeVar("S", bound=BaseService[Any])


@functools.cache
def service_dependency(service: type[S]) -> Callable[..., Awaitable[S]]:
    """The dependency that builds `service` for the request's caller (one per class, so that
    FastAPI's per-request dependency cache shares one instance within a request)."""

    async def build(
        session: SessionDep, principal: CurrentUser, settings: SettingsDep, cache: CacheDep
    ) -> S:
        return service.for_request(session, principal, settings, cache)

    build.__name__ = build.__qualname__ = f"get_{service.__name__}"
    return build


class ServiceDep:
    """`users: ServiceDep[UserService]` in a route's signature: the service for the caller."""

    def __class_getitem__(cls, service: type[S]) -> Any:
        return Annotated[service, Depends(service_dependency(service))]
