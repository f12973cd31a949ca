"""Pagination: page numbers for bounded lists, signed keyset cursors for unbounded ones."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.exceptions import BadRequestError

MAX_PAGE_SIZE = 100
TOTAL_LABEL = "total_rows"  # the window count's column in `paginate`


@dataclass(frozen=True, slots=True)
class PaginationParams:
    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


async def pagination_params(
    page: Annotated[int, Query(ge=1, le=100_000, description="1-based page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")] = 20,
) -> PaginationParams:
    return PaginationParams(page=page, page_size=page_size)


@dataclass(frozen=True, slots=True)
class PageResult:
    items: list[Any]
    total: int
    page: int
    page_size: int


async def paginate(
    session: AsyncSession, statement: Select[Any], params: PaginationParams
) -> PageResult:
    """The page and the filtered total in one statement: each row carries `count(*) OVER ()`.

    A page past the end has no row to carry the total: only then is a plain COUNT sent too.
    """
    windowed = (
        statement.add_columns(func.count().over().label(TOTAL_LABEL))
        .limit(params.page_size)
        .offset(params.offset)
    )
    rows = (await session.execute(windowed)).all()
    if rows:
        total = rows[0][-1]
    elif params.offset == 0:
        total = 0
    else:
        count = select(func.count()).select_from(statement.order_by(None).subquery())
        total = (await session.execute(count)).scalar_one()
    items = [row[0] for row in rows]
    return PageResult(items=items, total=total, page=params.page, page_size=params.page_size)


class CursorCodec:
    """Opaque, tamper-proof keyset cursors: the position as JSON, signed with HMAC-SHA256.

    A forged or garbled cursor is refused as a 400 problem, never trusted and never a 500.
    """

    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = hashlib.sha256(secret + b"|cursor|" + purpose.encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def encode(self, position: list[Any]) -> str:
        payload = json.dumps(position, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._sign(payload) + payload).decode().rstrip("=")

    def decode(self, cursor: str) -> list[Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            signature, payload = raw[:16], raw[16:]
            if len(signature) == 16 and hmac.compare_digest(signature, self._sign(payload)):
                position = json.loads(payload)
                if isinstance(position, list):
                    return position
        except (ValueError, TypeError):
            pass
        raise BadRequestError("The cursor is not valid; start again from the first page.")
