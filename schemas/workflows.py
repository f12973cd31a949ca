"""Workflows (steps with automation scores) and the runs users record against them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field, field_validator

from common.enums import RunStatus, WorkflowStatus
from common.validators import MAX_ID, LongText, Name, ShortText, refuse_null
from schemas.base import InputSchema, Schema, UpdateSchema

MAX_STEPS = 100
MAX_STEP_MINUTES = 7 * 24 * 60  # one step of a week is already an outlier
MAX_RUN_SECONDS = 31 * 24 * 60 * 60

Minutes = Field(gt=0, le=MAX_STEP_MINUTES, allow_inf_nan=False)
Score = Field(ge=0, le=1, allow_inf_nan=False)


# --- workflows ---------------------------------------------------------------------------------


class WorkflowStep(InputSchema):
    """One step of a workflow as a client sends it; unknown keys are refused."""

    name: Name
    minutes: float = Minutes
    automation_score: float = Score


class WorkflowStepRead(Schema):
    name: str
    minutes: float
    automation_score: float


class WorkflowSummary(Schema):
    """A list item: everything but the steps and the description."""

    id: int
    company_id: int
    name: str
    department: str | None
    status: WorkflowStatus
    automation_potential: float
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class Workflow(WorkflowSummary):
    description: str | None
    steps: list[WorkflowStepRead]


class WorkflowStats(Schema):
    """Usage over the last 30 days; the mean counts completed runs only."""

    runs_30d: int
    distinct_users_30d: int
    mean_duration_seconds: float | None


class WorkflowDetail(Workflow):
    stats: WorkflowStats


class WorkflowCreate(InputSchema):
    # `automation_potential` is derived from the steps, never accepted (extra fields: 422).
    name: Name
    department: ShortText | None = None
    description: LongText | None = None
    status: WorkflowStatus = WorkflowStatus.DRAFT
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)
    # Only the platform admin may create in another company; others create in their own.
    company_id: int | None = Field(None, ge=1, le=MAX_ID)


class WorkflowUpdate(UpdateSchema):
    name: Name | None = None
    department: ShortText | None = None
    description: LongText | None = None
    status: WorkflowStatus | None = None
    steps: list[WorkflowStep] | None = Field(None, min_length=1, max_length=MAX_STEPS)

    @field_validator("name", "status", "steps")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Defaults are not validated, so this fires only on an explicit null.
        return refuse_null(value)


# --- runs (workflow history) -------------------------------------------------------------------


class WorkflowRunCreate(InputSchema):
    """A run recorded by the caller. Times must carry an offset; see the service for the rules
    that tie them together (defaults, derivations, no future)."""

    status: RunStatus
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    duration_seconds: int | None = Field(None, ge=0, le=MAX_RUN_SECONDS)


class WorkflowRun(Schema):
    id: int
    user_id: int
    workflow_id: int
    workflow_name: str
    status: RunStatus
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: int | None
