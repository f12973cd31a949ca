from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from api.deps import CompanyFilter, IdPath, ServiceDep
from api.http_cache import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatch,
    check_if_match,
    etag_response,
    with_etag,
)
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from common.enums import Role
from common.request_deps import PageParams
from common.validators import SearchTerm, ShortText
from schemas.base import Page
from schemas.users import User, UserCreate, UserSuggestion, UserUpdate
from services.users import UserService

router = resource_router("/users", "users")


@router.get("", response_model=Page[User], summary="Users of the caller's company")
async def list_users(
    users: ServiceDep[UserService],
    page: PageParams,
    department: Annotated[ShortText | None, Query()] = None,
    role: Annotated[Role | None, Query()] = None,
    q: Annotated[SearchTerm | None, Query(description="start of the name or email")] = None,
    company_id: CompanyFilter = None,
) -> object:
    return await users.list(page, department=department, role=role, q=q, company_id=company_id)


@router.get(
    "/autocomplete",
    response_model=list[UserSuggestion],
    responses=NOT_MODIFIED,
    summary="Users of the caller's company whose name or email starts with q",
)
async def autocomplete_users(
    request: Request,
    users: ServiceDep[UserService],
    q: Annotated[SearchTerm, Query(min_length=2)],
    limit: Annotated[int, Query(ge=1, le=20)] = 10,
) -> object:
    return etag_response(request, await users.suggestions(q, limit))


@router.get("/{user_id}", response_model=User, responses=NOT_MODIFIED)
async def get_user(request: Request, user_id: IdPath, users: ServiceDep[UserService]) -> object:
    return etag_response(request, User.model_validate(await users.get(user_id)))


@router.post(
    "",
    response_model=User,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
    responses=with_idempotency(),
)
async def create_user(
    data: UserCreate, users: ServiceDep[UserService], request: Request, response: Response
) -> object:
    user = await users.create(data)
    set_location(request, response, "get_user", user_id=user.id)
    return user


@router.patch("/{user_id}", response_model=User, responses=PRECONDITION_FAILED)
async def update_user(
    user_id: IdPath,
    data: UserUpdate,
    users: ServiceDep[UserService],
    response: Response,
    if_match: IfMatch = None,
) -> object:
    if if_match is not None:
        check_if_match(if_match, User.model_validate(await users.lock(user_id)))
    return with_etag(response, User.model_validate(await users.update(user_id, data)))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Deactivate")
async def deactivate_user(user_id: IdPath, users: ServiceDep[UserService]) -> None:
    await users.deactivate(user_id)
