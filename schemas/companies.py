from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from common.validators import CountryCode, Name, ShortText, refuse_null
from schemas.base import InputSchema, Schema, UpdateSchema


class Company(Schema):
    id: int
    name: str
    slug: str
    industry: str | None
    country: str
    employee_count: int
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CompanyCreate(InputSchema):
    name: Name
    industry: ShortText | None = None
    country: CountryCode
    employee_count: int = Field(0, ge=0, le=10_000_000)
    is_active: bool = True


class CompanyUpdate(UpdateSchema):
    name: Name | None = None
    industry: ShortText | None = None
    country: CountryCode | None = None
    employee_count: int | None = Field(None, ge=0, le=10_000_000)
    is_active: bool | None = None

    @field_validator("name", "country", "employee_count", "is_active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return refuse_null(value)
