from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, column
from sqlalchemy.orm import Mapped, mapped_column

from common.enums import DocumentStatus, sql_in
from models.base import Base, enum_column


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint(sql_in("status", DocumentStatus), name="status_valid"),
        CheckConstraint("size_bytes >= 0", name="size_non_negative"),
        # Performance indexes: migration 0002 builds them and says which query each serves.
        Index(
            "ix_documents_tenant_id_created_at_id",
            "tenant_id",
            column("created_at").desc(),
            column("id").desc(),
        ),
        Index(
            "ix_documents_tenant_id_status_created_at_id",
            "tenant_id",
            "status",
            column("created_at").desc(),
            column("id").desc(),
        ),
        Index(
            "ix_documents_status_created_at_id",
            "status",
            column("created_at").desc(),
            column("id").desc(),
        ),
    )

    tenant_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="RESTRICT"))
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[DocumentStatus] = mapped_column(
        enum_column(DocumentStatus), default=DocumentStatus.UPLOADED
    )
    # Optimistic concurrency: SQLAlchemy adds `WHERE version = :old` to every UPDATE.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}
