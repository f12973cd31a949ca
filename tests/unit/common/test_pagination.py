"""Page numbers and the page envelope; signed keyset cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Integer, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.exceptions import BadRequestError
from common.pagination import CursorCodec, PaginationParams, paginate
from schemas.base import Page

# --- page numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "page_size", "offset"),
    [(1, 20, 0), (2, 20, 20), (3, 7, 14), (100_000, 100, 9_999_900)],
)
def test_offset(page, page_size, offset):
    assert PaginationParams(page=page, page_size=page_size).offset == offset


@pytest.mark.parametrize(
    ("total", "page_size", "pages"),
    [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (100, 1, 100)],
)
def test_pages_in_the_envelope(total, page_size, pages):
    page = Page[int](items=[], total=total, page=1, page_size=page_size)
    assert page.pages == pages
    assert page.model_dump() == {
        "items": [],
        "total": total,
        "page": 1,
        "page_size": page_size,
        "pages": pages,
    }


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int]


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as connection:
        await connection.run_sync(_Base.metadata.create_all)
    async with AsyncSession(engine) as s:
        s.add_all([Row(id=i, n=i % 3) for i in range(1, 26)])
        await s.flush()
        yield s
    await engine.dispose()


async def test_paginate_counts_the_filtered_rows_and_returns_one_page(session):
    statement = select(Row).where(Row.n == 0).order_by(Row.id)  # ids 3, 6, ..., 24: 8 rows
    first = await paginate(session, statement, PaginationParams(page=1, page_size=3))
    assert first.total == 8
    assert [r.id for r in first.items] == [3, 6, 9]
    last = await paginate(session, statement, PaginationParams(page=3, page_size=3))
    assert [r.id for r in last.items] == [21, 24]
    beyond = await paginate(session, statement, PaginationParams(page=4, page_size=3))
    assert (beyond.items, beyond.total) == ([], 8)


async def test_paginate_an_empty_result(session):
    result = await paginate(session, select(Row).where(Row.n == 99), PaginationParams())
    assert (result.items, result.total, result.page, result.page_size) == ([], 0, 1, 20)


# --- cursors ----------------------------------------------------------------------------------

CODEC = CursorCodec(b"secret", "history")


@pytest.mark.parametrize("position", [[], [1], ["2026-01-01T00:00:00+00:00", 42], [None, 1.5]])
def test_cursor_round_trip(position):
    cursor = CODEC.encode(position)
    assert "=" not in cursor  # URL-safe, no padding
    assert CODEC.decode(cursor) == position


def _forge(payload: bytes, signature: bytes = b"\x00" * 16) -> str:
    return base64.urlsafe_b64encode(signature + payload).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64 !!", id="not-base64"),
        pytest.param("AAAA", id="too-short"),
        pytest.param(_forge(b"[1]"), id="unsigned"),
        pytest.param(CursorCodec(b"other", "history").encode([1]), id="other-secret"),
        pytest.param(CursorCodec(b"secret", "documents").encode([1]), id="other-purpose"),
        pytest.param("\x00\x00", id="nul"),
        pytest.param("é" * 10, id="non-ascii"),
        pytest.param("A" * 10_000, id="huge"),
    ],
)
def test_bad_cursors_are_a_400_problem(cursor):
    with pytest.raises(BadRequestError) as raised:
        CODEC.decode(cursor)
    assert raised.value.status == 400


def test_tampering_with_a_real_cursor_is_refused():
    cursor = CODEC.encode([10, 5])
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    tampered = _forge(json.dumps([1, 5]).encode(), raw[:16])
    with pytest.raises(BadRequestError):
        CODEC.decode(tampered)


def test_a_signed_cursor_that_is_not_a_list_is_refused():
    # Properly signed (by this codec's own key), but not a position: still refused.
    payload = b'{"a": 1}'
    with pytest.raises(BadRequestError):
        CODEC.decode(_forge(payload, CODEC._sign(payload)))
