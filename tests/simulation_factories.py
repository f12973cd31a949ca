"""Factories for simulation and dashboard tests: workflows, runs (bulk), documents, simulations.

Runs and documents are inserted with one bulk INSERT each, so a test can build hundreds of rows
cheaply. Times are relative to `now` (days ago), never to a fixed date.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import DocumentStatus, RunStatus, SimulationStatus, WorkflowStatus
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from services.simulation_model import Assumptions, automation_potential, simulate

_sequence = itertools.count(1)


def step(name: str, minutes: float, automation_score: float) -> dict[str, Any]:
    return {"name": name, "minutes": minutes, "automation_score": automation_score}


async def create_workflow(
    session: AsyncSession,
    company: Company,
    *,
    name: str | None = None,
    department: str | None = "Finance",
    steps: Sequence[dict[str, Any]] = (),
    status: WorkflowStatus = WorkflowStatus.ACTIVE,
    created_by: User | None = None,
) -> Workflow:
    steps = list(steps) or [step("Review", 30, 0.5)]
    workflow = Workflow(
        company_id=company.id,
        name=name or f"Workflow {next(_sequence)}",
        department=department,
        status=status.value,
        steps=steps,
        automation_potential=automation_potential(steps),
        created_by=created_by.id if created_by else None,
    )
    session.add(workflow)
    await session.flush()
    return workflow


async def add_runs(
    session: AsyncSession,
    workflow: Workflow,
    users: Sequence[User],
    count: int,
    *,
    status: RunStatus = RunStatus.COMPLETED,
    days_ago: float = 10,
    now: datetime | None = None,
) -> None:
    """`count` runs of `workflow`, spread round-robin over `users`, started `days_ago` days ago
    (each a minute apart), in one bulk INSERT."""
    if count <= 0:
        return
    now = now or datetime.now(UTC)
    rows = []
    for n in range(count):
        started = now - timedelta(days=days_ago, minutes=n)
        finished = status is not RunStatus.STARTED
        rows.append(
            {
                "user_id": users[n % len(users)].id,
                "workflow_id": workflow.id,
                "company_id": workflow.company_id,
                "status": status.value,
                "started_at": started,
                "completed_at": started + timedelta(minutes=5) if finished else None,
                "duration_seconds": 300 if finished else None,
            }
        )
    await session.execute(insert(UserWorkflowHistory), rows)


async def add_documents(
    session: AsyncSession,
    company: Company,
    uploader: User | None,
    statuses: Sequence[DocumentStatus],
) -> None:
    """One document per entry of `statuses`, in one bulk INSERT (no bytes behind them)."""
    rows = []
    for status in statuses:
        n = next(_sequence)
        rows.append(
            {
                "tenant_id": company.id,
                "uploaded_by": uploader.id if uploader else None,
                "title": f"Document {n}",
                "filename": f"document-{n}.txt",
                "content_type": "text/plain",
                "size_bytes": 10,
                "sha256": "0" * 64,
                "storage_key": f"{company.id}/test-{n:032x}",
                "status": status.value,
            }
        )
    if rows:
        await session.execute(insert(Document), rows)


async def create_stored_simulation(
    session: AsyncSession,
    company: Company,
    *,
    name: str | None = None,
    hours_saved: float | None = 100.0,
    created_at: datetime | None = None,
) -> Simulation:
    """A stored simulation row with just enough results for lists and the dashboard."""
    now = datetime.now(UTC)
    results = None
    if hours_saved is not None:
        # A well-formed results document (as the service stores) whose totals are the ones asked.
        results = simulate(Assumptions(1.0, 1, 0, 50.0), [])
        results["monthly"][0].update(hours_saved=hours_saved, cost_saved=hours_saved * 50)
        results["totals"] = {
            "hours_saved": hours_saved,
            "cost_saved": hours_saved * 50,
            "fte_equivalent": round(hours_saved / 160, 2),
        }
    simulation = Simulation(
        company_id=company.id,
        name=name or f"Simulation {next(_sequence)}",
        parameters={"adoption_rate": 1.0, "horizon_months": 1, "ramp_months": 0, "hourly_cost": 50},
        status=(SimulationStatus.COMPLETED if results else SimulationStatus.FAILED).value,
        results=results,
        completed_at=now if results else None,
        created_at=created_at or now,
    )
    session.add(simulation)
    await session.flush()
    return simulation
