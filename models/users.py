from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    column,
    func,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.enums import Role, sql_in
from models.base import Base, enum_column
from models.companies import Company


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(sql_in("role", Role), name="role_valid"),
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        # Performance indexes: migration 0002 builds them and says which query each serves.
        # `email` alone needs none: its unique constraint is already a b-tree index.
        Index("ix_users_company_id_full_name_id", "company_id", "full_name", "id"),
        Index(
            "ix_users_company_id_lower_full_name",
            "company_id",
            func.lower(column("full_name")).label("lower_full_name"),
            postgresql_ops={"lower_full_name": "text_pattern_ops"},
        ),
        Index(
            "ix_users_company_id_email",
            "company_id",
            "email",
            postgresql_ops={"email": "text_pattern_ops"},
        ),
    )

    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="RESTRICT"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(100))
    job_title: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.MEMBER)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    last_login_at: Mapped[datetime | None]
    # Bumped by a password change, a deactivation and "log out everywhere": every access token
    # carries the version it was issued under (claim `cv`) and is refused once it differs.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    company: Mapped[Company] = relationship(lazy="raise")
