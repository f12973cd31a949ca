from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, status
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import AuthServiceDep, CurrentAccount, CurrentUser
from api.routers import resource_router
from schemas.auth import PasswordChange, Token
from schemas.users import User

router = resource_router("/auth", "auth")


async def password_form(
    username: Annotated[str, Form()],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
) -> OAuth2PasswordRequestForm:
    """OAuth2PasswordRequestForm's fields, read by an async dependency: the class itself, as a
    dependency, would be called in a worker thread on every login."""
    return OAuth2PasswordRequestForm(
        grant_type=grant_type,
        username=username,
        password=password,
        scope=scope,
        client_id=client_id,
        client_secret=client_secret,
    )


@router.post("/token", response_model=Token, summary="Log in: email and password for a token")
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends(password_form)], auth: AuthServiceDep
) -> Token:
    issued = await auth.login(form.username, form.password)
    return Token(access_token=issued.token, expires_in=issued.expires_in)


@router.get("/me", response_model=User, summary="The caller")
async def me(account: CurrentAccount) -> object:
    return account


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
