from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    column,
)
from sqlalchemy.orm import Mapped, mapped_column

from common.enums import RunStatus, WorkflowStatus, sql_in
from models.base import Base, JSONType, enum_column


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("company_id", "name"),
        CheckConstraint(sql_in("status", WorkflowStatus), name="status_valid"),
        CheckConstraint(
            "automation_potential >= 0 AND automation_potential <= 1",
            name="automation_potential_range",
        ),
    )

    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[WorkflowStatus] = mapped_column(
        enum_column(WorkflowStatus), default=WorkflowStatus.DRAFT
    )
    # [{"name": str, "minutes": float > 0, "automation_score": 0..1}, ...]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # Minutes-weighted mean of the step scores; services keep it in step with `steps`.
    automation_potential: Mapped[float] = mapped_column(Float, default=0.0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class UserWorkflowHistory(Base):
    """One row per run of a workflow by a user. Grows without bound."""

    __tablename__ = "user_workflow_history"
    __table_args__ = (
        CheckConstraint(sql_in("status", RunStatus), name="status_valid"),
        CheckConstraint("duration_seconds >= 0", name="duration_non_negative"),
        # Performance indexes: migration 0002 builds them and says which query each serves.
        Index(
            "ix_user_workflow_history_user_id_company_id_started_at_id",
            "user_id",
            "company_id",
            column("started_at").desc(),
            column("id").desc(),
        ),
        Index("ix_user_workflow_history_workflow_id_started_at", "workflow_id", "started_at"),
        Index(
            "ix_user_workflow_history_company_id_started_at",
            "company_id",
            "started_at",
            postgresql_include=["workflow_id", "user_id", "status", "id"],
        ),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
