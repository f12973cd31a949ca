"""Factories for workflows and runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import RunStatus, WorkflowStatus
from models import Company, User, UserWorkflowHistory, Workflow
from schemas.workflows import WorkflowStep
from services.workflows import automation_potential

_sequence = itertools.count(1)

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"name": "Collect receipts", "minutes": 30, "automation_score": 0.8},
    {"name": "Approve", "minutes": 10, "automation_score": 0.2},
]


def step_payload(**overrides: Any) -> dict[str, Any]:
    return {"name": "Step", "minutes": 15, "automation_score": 0.5, **overrides}


async def create_workflow(
    session: AsyncSession,
    company: Company,
    creator: User | None = None,
    *,
    steps: list[dict[str, Any]] | None = None,
    status: WorkflowStatus = WorkflowStatus.ACTIVE,
    **values: Any,
) -> Workflow:
    steps = [WorkflowStep.model_validate(s).model_dump() for s in (steps or DEFAULT_STEPS)]
    values.setdefault("name", f"Workflow {next(_sequence)}")
    values.setdefault("department", "Finance")
    workflow = Workflow(
        company_id=company.id,
        created_by=creator.id if creator else None,
        status=status.value,
        steps=steps,
        automation_potential=automation_potential(WorkflowStep(**s) for s in steps),
        **values,
    )
    session.add(workflow)
    await session.flush()
    return workflow


async def create_run(
    session: AsyncSession,
    user: User,
    workflow: Workflow,
    *,
    started_at: datetime | None = None,
    status: RunStatus = RunStatus.COMPLETED,
    duration_seconds: int | None = 600,
) -> UserWorkflowHistory:
    started_at = started_at or datetime.now(UTC) - timedelta(hours=1)
    completed = status is not RunStatus.STARTED and duration_seconds is not None
    run = UserWorkflowHistory(
        user_id=user.id,
        workflow_id=workflow.id,
        company_id=workflow.company_id,
        status=status.value,
        started_at=started_at,
        completed_at=started_at + timedelta(seconds=duration_seconds or 0) if completed else None,
        duration_seconds=duration_seconds if completed else None,
    )
    session.add(run)
    await session.flush()
    return run
