from __future__ import annotations

from datetime import datetime

from pydantic import EmailStr, Field, field_validator

from common.enums import Role
from common.validators import MAX_ID, Name, Password, ShortText, refuse_null
from schemas.base import InputSchema, Schema, UpdateSchema


class User(Schema):
    id: int
    company_id: int
    email: str
    full_name: str
    department: str | None
    job_title: str | None
    role: Role
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserSuggestion(Schema):
    """An autocomplete hit: just enough to show and pick."""

    id: int
    full_name: str
    email: str
    department: str | None
    job_title: str | None


class UserCreate(InputSchema):
    email: EmailStr = Field(max_length=320)
    full_name: Name
    password: Password
    department: ShortText | None = None
    job_title: Name | None = None
    role: Role = Role.MEMBER
    # Only the platform admin may place a user in another company; others get their own.
    company_id: int | None = Field(None, ge=1, le=MAX_ID)

    @field_validator("email")
    @classmethod
    def _email_lower(cls, value: str) -> str:
        return value.lower()


class UserUpdate(UpdateSchema):
    email: EmailStr | None = Field(None, max_length=320)
    full_name: Name | None = None
    password: Password | None = None
    department: ShortText | None = None
    job_title: Name | None = None
    role: Role | None = None
    is_active: bool | None = None

    @field_validator("email", "full_name", "password", "role", "is_active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return refuse_null(value)

    @field_validator("email")
    @classmethod
    def _email_lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value
