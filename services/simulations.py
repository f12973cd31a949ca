"""Simulations of AI adoption: computed from the company's own data and stored with results.

A simulation costs two statements whatever the size of the company: one that reads the
workflows in scope together with their completed-run counts (aggregated in the database), and
the INSERT of the result. The arithmetic is in `services/simulation_model.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import RunStatus, SimulationStatus, WorkflowStatus
from common.pagination import PageResult, PaginationParams
from models import Simulation, UserWorkflowHistory, Workflow
from models.base import utcnow
from schemas import simulations as schemas
from schemas.simulations import SimulationCreate, SimulationParametersInput
from services import cache_invalidation
from services.base_service import BaseService, of_tenant
from services.cache_invalidation import Tags
from services.cache_service import CacheName, cached, tenant_scope, user_scope
from services.simulation_model import (
    HISTORY_WINDOW_DAYS,
    Assumptions,
    WorkflowInput,
    simulate,
)

# Above this many workflows the arithmetic (and walking their steps) moves to a worker thread,
# so a large company cannot stall the event loop; below it the thread hop costs more than it saves.
THREAD_THRESHOLD = 500


async def workflows_in_scope(
    session: AsyncSession, company_id: int, departments: Sequence[str] | None, since: datetime
) -> list[WorkflowInput]:
    """The company's active workflows (of `departments`, when given), each with the number of
    its completed runs started since `since`. One statement: the count is a GROUP BY in the
    database, never a row per run in Python."""
    history = UserWorkflowHistory
    statement = (
        select(
            Workflow.id,
            Workflow.name,
            Workflow.department,
            Workflow.steps,
            func.count(history.id).label("completed_runs"),
        )
        .outerjoin(
            history,
            and_(
                history.workflow_id == Workflow.id,
                of_tenant(history, company_id),
                history.status == RunStatus.COMPLETED,
                history.started_at >= since,
            ),
        )
        .where(of_tenant(Workflow, company_id), Workflow.status == WorkflowStatus.ACTIVE)
        .group_by(Workflow.id)
        .order_by(Workflow.id)
    )
    if departments is not None:
        statement = statement.where(Workflow.department.in_(departments))
    rows = await session.execute(statement)
    return [
        WorkflowInput(
            id=row.id,
            name=row.name,
            department=row.department,
            steps=row.steps if isinstance(row.steps, list) else [],
            completed_runs=row.completed_runs,
        )
        for row in rows
    ]


async def run_simulation(
    session: AsyncSession,
    *,
    company_id: int,
    created_by: int | None,
    name: str,
    parameters: SimulationParametersInput,
    now: datetime | None = None,
) -> Simulation:
    """Compute and store a completed simulation for `company_id`. No permission checks: the
    service (or the seeding tool) decides who may run it. The caller commits."""
    now = now or utcnow()
    workflows = await workflows_in_scope(
        session, company_id, parameters.departments, now - timedelta(days=HISTORY_WINDOW_DAYS)
    )
    assumptions = Assumptions(
        adoption_rate=parameters.adoption_rate,
        horizon_months=parameters.horizon_months,
        ramp_months=parameters.ramp_months,
        hourly_cost=parameters.hourly_cost,
    )
    if len(workflows) > THREAD_THRESHOLD:
        results = await anyio.to_thread.run_sync(simulate, assumptions, workflows)
    else:
        results = simulate(assumptions, workflows)
    simulation = Simulation(
        company_id=company_id,
        created_by=created_by,
        name=name,
        parameters=parameters.model_dump(mode="json"),
        status=SimulationStatus.COMPLETED,
        results=results,
        completed_at=now,
    )
    session.add(simulation)
    await session.flush()
    return simulation


class SimulationService(BaseService[Simulation]):
    model = Simulation
    label = "Simulation"

    async def list(self, params: PaginationParams, company_id: int | None = None) -> PageResult:
        """Newest first. Items carry the totals only: the monthly series stays in the database
        (two statements: the count and the page)."""
        filtered = self.tenant_filter(select(Simulation.id), company_id)
        total = (
            await self.session.execute(select(func.count()).select_from(filtered.subquery()))
        ).scalar_one()
        items: list[object] = []
        if total and params.offset < total:
            statement = self.tenant_filter(
                select(
                    Simulation.id,
                    Simulation.company_id,
                    Simulation.created_by,
                    Simulation.name,
                    Simulation.status,
                    Simulation.parameters,
                    Simulation.results["totals"].label("totals"),
                    Simulation.completed_at,
                    Simulation.created_at,
                ),
                company_id,
            )
            statement = (
                statement.order_by(Simulation.created_at.desc(), Simulation.id.desc())
                .limit(params.page_size)
                .offset(params.offset)
            )
            items = list((await self.session.execute(statement)).all())
        return PageResult(items=items, total=total, page=params.page, page_size=params.page_size)

    # A stored simulation never changes, so its entry lives until its TTL. The scope is whose
    # view it is: every user of a company reads the same rows; the admin reads every company's,
    # so its entries are its own and never answer a tenant's request (nor the reverse).
    @cached(
        CacheName.SIMULATIONS,
        scope=lambda self, **_: (
            user_scope(self.principal.user_id)
            if self.principal.is_admin
            else tenant_scope(self.principal.company_id)
        ),
        tags=lambda self, simulation_id: [Tags.simulation(simulation_id)],
    )
    async def detail(self, simulation_id: int) -> schemas.Simulation:
        """`get()` as the API shows it."""
        return schemas.Simulation.model_validate(await self.get(simulation_id))

    async def create(self, data: SimulationCreate) -> Simulation:
        self.require_chro_or_admin()
        company_id = await self.company_for_write(data.company_id)
        simulation = await run_simulation(
            self.session,
            company_id=company_id,
            created_by=self.principal.user_id,
            name=data.name,
            parameters=data.parameters,
        )
        cache_invalidation.simulation_changed(self.cache, company_id, simulation.id)
        return simulation
