from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from common.validators import CountryCode, EmailDomain, Name, ShortText, refuse_null
from schemas.base import InputSchema, Schema, UpdateSchema

MAX_DOMAINS = 50


class Company(Schema):
    id: int
    name: str
    slug: str
    industry: str | None
    country: str
    employee_count: int
    email_domains: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CompanyCreate(InputSchema):
    name: Name
    industry: ShortText | None = None
    country: CountryCode
    employee_count: int = Field(0, ge=0, le=10_000_000)
    # Where the company's CHRO may create addresses (lower-case domain names).
    email_domains: list[EmailDomain] = Field(default_factory=list, max_length=MAX_DOMAINS)
    is_active: bool = True

    @field_validator("email_domains")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class CompanyUpdate(UpdateSchema):
    name: Name | None = None
    industry: ShortText | None = None
    country: CountryCode | None = None
    employee_count: int | None = Field(None, ge=0, le=10_000_000)
    email_domains: list[EmailDomain] | None = Field(None, max_length=MAX_DOMAINS)
    is_active: bool | None = None

    @field_validator("name", "country", "employee_count", "email_domains", "is_active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        return refuse_null(value)

    @field_validator("email_domains")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None
