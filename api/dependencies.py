"""Auth dependencies and the service aliases that routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from common.dependencies import SessionDep, SettingsDep
from common.principal import Principal
from services.auth import AuthService
from services.companies import CompanyService
from services.users import UserService

API_PREFIX = "/api/v1"

# auto_error=False: a missing token is answered by our own 401 problem, not FastAPI's.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=f"{API_PREFIX}/auth/token", auto_error=False)


def get_auth_service(session: SessionDep, settings: SettingsDep) -> AuthService:
    return AuthService(session, settings)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_principal(
    request: Request,
    auth: AuthServiceDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    principal = await auth.principal(token)
    # Lets the access log and error reports name the caller.
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


def get_company_service(session: SessionDep, principal: CurrentUser) -> CompanyService:
    return CompanyService(session, principal)


def get_user_service(session: SessionDep, principal: CurrentUser) -> UserService:
    return UserService(session, principal)


CompanyServiceDep = Annotated[CompanyService, Depends(get_company_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
