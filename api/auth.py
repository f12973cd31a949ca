from __future__ import annotations

from typing import Annotated

from fastapi import Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import AuthServiceDep, CurrentUser, UserServiceDep
from api.routers import resource_router
from schemas.auth import PasswordChange, Token
from schemas.users import User

router = resource_router("/auth", "auth")


@router.post("/token", response_model=Token, summary="Log in: email and password for a token")
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], auth: AuthServiceDep
) -> Token:
    issued = await auth.login(form.username, form.password)
    return Token(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=User, summary="The caller")
async def me(principal: CurrentUser, users: UserServiceDep) -> object:
    return await users.get(principal.user_id)


@router.post(
    "/password",
    response_model=Token,
    summary="Change your own password; every earlier token stops working",
    description="Needs the current password. Answers with a fresh token: the one this request "
    "was made with, and every other token issued to you so far, are refused from now on.",
)
async def change_password(
    data: PasswordChange, principal: CurrentUser, auth: AuthServiceDep
) -> Token:
    issued = await auth.change_password(principal, data.current_password, data.new_password)
    return Token(access_token=issued.token, expires_in=issued.expires_in)


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Log out everywhere: revoke every token issued to you so far",
)
async def logout_all(principal: CurrentUser, auth: AuthServiceDep) -> None:
    await auth.logout_everywhere(principal)
