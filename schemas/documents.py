from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from common.enums import DocumentStatus
from common.validators import MAX_ID, Name, refuse_null
from schemas.base import Schema, UpdateSchema


class Document(Schema):
    """A document's metadata. The bytes are at `GET /documents/{id}/content`; where they are
    stored (`storage_key`) is the server's business and never shown."""

    id: int
    tenant_id: int
    uploaded_by: int | None
    title: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str = Field(description="hex SHA-256 of the content")
    status: DocumentStatus
    version: int = Field(description="send it back (or If-Match) with the next PATCH")
    created_at: datetime
    updated_at: datetime


class DocumentUpdate(UpdateSchema):
    """Change the title and/or move the status on. `version` is the version the change was
    based on (or send `If-Match: "<version>"`); a stale one is refused with 409."""

    title: Name | None = None
    status: DocumentStatus | None = None
    version: int | None = Field(None, ge=1, le=MAX_ID)

    @field_validator("title", "status", "version")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return refuse_null(value)

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set - {"version"}:
            raise ValueError("send `title` and/or `status` to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"version"})
