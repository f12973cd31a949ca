from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request, status

from api.deps import AuthServiceDep, CurrentAccount, CurrentUser, LoginFailuresDep
from api.routers import resource_router
from common.exceptions import AuthenticationError, PayloadTooLargeError
from schemas.auth import PasswordChange, Token
from schemas.users import User

router = resource_router("/auth", "auth")

# A login form is a few hundred bytes: a larger one is refused.
MAX_LOGIN_BODY = 16 * 1024


@dataclass(frozen=True, slots=True)
class LoginForm:
    username: str
    password: str


async def login_form(
    request: Request,
    username: Annotated[str, Form(description="the account's email address")],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
) -> LoginForm:
    """The OAuth2 password form (what `OAuth2PasswordRequestForm` reads), as an async
    dependency: a class dependency would run in the thread pool on every login."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_LOGIN_BODY:
        raise PayloadTooLargeError("The login form is larger than any login needs.")
    return LoginForm(username, password)


@router.post("/token", response_model=Token, summary="Log in: email and password for a token")
async def issue_token(
    form: Annotated[LoginForm, Depends(login_form)],
    auth: AuthServiceDep,
    failures: LoginFailuresDep,
) -> Token:
    try:
        issued = await auth.login(form.username, form.password)
    except AuthenticationError:
        await failures.failed(form.username)  # 429 instead, past the account's quota
        raise
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
