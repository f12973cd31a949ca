"""`Annotated` dependency aliases that routes declare in their signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from common.pagination import PaginationParams, pagination_params
from common.transactions import SESSION_STATE_KEY, request_session
from settings.config import Settings

# Requests that only read: no transaction round trips (settings/database.py).
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use; `TransactionalRoute` commits and closes it."""
    session = request_session(request)
    if session is None:
        session = request.app.state.database.session(request.method in READ_ONLY_METHODS)
        request.scope.setdefault("state", {})[SESSION_STATE_KEY] = session
    return session


async def get_redis(request: Request) -> Redis | None:
    return request.app.state.redis


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
RedisDep = Annotated[Redis | None, Depends(get_redis)]
PageParams = Annotated[PaginationParams, Depends(pagination_params)]
