"""The closed vocabularies shared by tables (check constraints) and schemas (validation).

Plain enums with no dependencies, so that `models/` and `schemas/` read one definition.
"""

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    CHRO = "chro"
    MEMBER = "member"


class WorkflowStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class RunStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


class DocumentStatus(StrEnum):
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class SimulationStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


def sql_in(column: str, values: type[StrEnum]) -> str:
    """`column IN ('a', 'b')` for a check constraint."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"
