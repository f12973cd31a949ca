from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import AuthServiceDep, CurrentUser, ServiceDep
from api.routers import resource_router
from schemas.auth import Token
from schemas.users import User
from services.users import UserService

router = resource_router("/auth", "auth")


@router.post("/token", response_model=Token, summary="Log in: email and password for a token")
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], auth: AuthServiceDep
) -> Token:
    issued = await auth.login(form.username, form.password)
    return Token(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=User, summary="The caller")
async def me(principal: CurrentUser, users: ServiceDep[UserService]) -> object:
    return await users.get(principal.user_id)
