"""Schema bases and the page envelopes shared by every list endpoint."""

from __future__ import annotations

from math import ceil
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, computed_field, model_validator

from common.validators import contains_nul

T = TypeVar("T")


class Schema(BaseModel):
    """A response model: read from ORM objects."""

    model_config = ConfigDict(from_attributes=True)


class InputSchema(BaseModel):
    """A request body: unknown fields are refused (nobody sets their own role or tenant), and no
    string anywhere in it may hold a NUL character."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if contains_nul(data):
            raise ValueError("strings must not contain NUL characters")
        return data


class UpdateSchema(InputSchema):
    """A PATCH body: every field optional; only the fields sent are applied."""

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pages(self) -> int:
        return ceil(self.total / self.page_size) if self.total else 0


class CursorPage(BaseModel, Generic[T]):
    """A keyset page: pass `next_cursor` back as `cursor` for the next one; null at the end."""

    items: list[T]
    next_cursor: str | None
