from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Integer, String, text, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType


class Company(Base):
    """The master company catalogue; a company is also the tenant boundary."""

    __tablename__ = "companies"
    __table_args__ = (
        CheckConstraint("employee_count >= 0", name="employee_count_non_negative"),
        CheckConstraint("length(country) = 2", name="country_alpha2"),
    )

    name: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    industry: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    employee_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Lower-case domain names, set by the platform admin: a CHRO creates users only with
    # addresses in these (services/users.py).
    email_domains: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default=text("'[]'")
    )
