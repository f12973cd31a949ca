from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, column
from sqlalchemy.orm import Mapped, mapped_column

from common.enums import SimulationStatus, sql_in
from models.base import Base, JSONType, enum_column


class Simulation(Base):
    __tablename__ = "simulations"
    __table_args__ = (
        CheckConstraint(sql_in("status", SimulationStatus), name="status_valid"),
        # Performance index: migration 0002 builds it and says which query it serves.
        Index(
            "ix_simulations_company_id_created_at_id",
            "company_id",
            column("created_at").desc(),
            column("id").desc(),
        ),
    )

    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="RESTRICT"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[SimulationStatus] = mapped_column(enum_column(SimulationStatus))
    results: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    completed_at: Mapped[datetime | None]
