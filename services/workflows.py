"""Workflows of a company: listing, detail with usage stats, and the chro/admin writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import defer

from common.enums import RunStatus, WorkflowStatus
from common.pagination import PageResult, PaginationParams, paginate
from models import UserWorkflowHistory, Workflow
from schemas import workflows as schemas
from services import cache_invalidation, simulation_model
from services.base_service import BaseService, like_contains, of_tenant
from services.cache_invalidation import Tags
from services.cache_service import CacheName, cached, tenant_scope, user_scope

STATS_WINDOW = timedelta(days=30)


def automation_potential(steps: Iterable[schemas.WorkflowStep]) -> float:
    """The workflow's automation potential from its validated steps (services.simulation_model
    holds the one definition)."""
    return simulation_model.automation_potential(step.model_dump() for step in steps)


class WorkflowService(BaseService[Workflow]):
    model = Workflow
    label = "Workflow"

    async def list(
        self,
        params: PaginationParams,
        department: str | None = None,
        status: WorkflowStatus | None = None,
        q: str | None = None,
        company_id: int | None = None,
    ) -> PageResult:
        statement = (
            self.readable(company_id)
            # A list item shows neither; not fetching them keeps large JSON off the wire.
            .options(
                defer(Workflow.steps, raiseload=True), defer(Workflow.description, raiseload=True)
            )
            .order_by(Workflow.name, Workflow.id)
        )
        if department:
            statement = statement.where(Workflow.department == department)
        if status:
            statement = statement.where(Workflow.status == status)
        if q:
            # Explicit escape character: SQLite, unlike PostgreSQL, has no default one.
            pattern = like_contains(q.lower())
            statement = statement.where(func.lower(Workflow.name).like(pattern, escape="\\"))
        return await paginate(self.session, statement, params)

    # Never a shared scope: `get()` is tenant-filtered, and a hit skips it (and its 404). A
    # tenant's users share one entry per workflow; the admin, who reads every company's, has
    # its own, so neither can ever answer the other's request. A write drops the entry
    # (`workflow_changed`), so does a new run (`run_recorded` drops `workflow-stats`); what no
    # write signals is time: runs leave the 30-day window as it slides, so an entry may count
    # a run that aged out since it was computed. The TTL (CACHE_TTL_WORKFLOWS, 120 s by
    # default) bounds that; keep it in minutes, not hours.
    @cached(
        CacheName.WORKFLOWS,
        scope=lambda self, **_: (
            user_scope(self.principal.user_id)
            if self.principal.is_admin
            else tenant_scope(self.principal.company_id)
        ),
        tags=lambda self, workflow_id: [
            Tags.workflow(workflow_id),
            Tags.workflow_stats(workflow_id),
        ],
    )
    async def detail(self, workflow_id: int) -> schemas.WorkflowDetail:
        workflow = await self.get(workflow_id)
        stats = await self.usage_stats(workflow)
        base = schemas.Workflow.model_validate(workflow).model_dump()
        return schemas.WorkflowDetail.model_validate({**base, "stats": stats})

    async def usage_stats(self, workflow: Workflow) -> schemas.WorkflowStats:
        """Runs, distinct users and mean duration of completed runs over the last 30 days, in
        one aggregate over the history (which may hold millions of rows)."""
        history = UserWorkflowHistory
        since = datetime.now(UTC) - STATS_WINDOW
        completed_duration = func.avg(history.duration_seconds).filter(
            history.status == RunStatus.COMPLETED
        )
        statement = select(
            func.count(history.id), func.count(distinct(history.user_id)), completed_duration
        ).where(
            of_tenant(history, workflow.company_id),
            history.workflow_id == workflow.id,
            history.started_at >= since,
        )
        runs, users, mean = (await self.session.execute(statement)).one()
        return schemas.WorkflowStats(
            runs_30d=runs,
            distinct_users_30d=users,
            mean_duration_seconds=None if mean is None else float(mean),
        )

    async def create(self, data: schemas.WorkflowCreate) -> Workflow:
        self.require_chro_or_admin()
        company_id = await self.company_for_write(data.company_id)
        workflow = Workflow(
            company_id=company_id,
            name=data.name,
            department=data.department,
            description=data.description,
            status=data.status,
            steps=[step.model_dump() for step in data.steps],
            automation_potential=automation_potential(data.steps),
            created_by=self.principal.user_id,
        )
        self.session.add(workflow)
        await self.flush(f"A workflow named {data.name!r} already exists in this company.")
        cache_invalidation.workflow_changed(self.cache, workflow.company_id, workflow.id)
        return workflow

    async def update(self, workflow_id: int, data: schemas.WorkflowUpdate) -> Workflow:
        workflow = await self.get(workflow_id)
        self.require_chro_or_admin()
        changes = data.changes()
        if data.steps is not None:
            # Derived on every write that changes the steps, so the two never disagree.
            changes["automation_potential"] = automation_potential(data.steps)
        if data.status is not None:
            changes["status"] = data.status
        for field, value in changes.items():
            setattr(workflow, field, value)
        await self.flush("Another workflow of this company already has that name.")
        cache_invalidation.workflow_changed(self.cache, workflow.company_id, workflow.id)
        return workflow

    async def archive(self, workflow_id: int) -> None:
        workflow = await self.get(workflow_id)
        self.require_chro_or_admin()
        workflow.status = WorkflowStatus.ARCHIVED
        await self.flush("The workflow could not be archived.")
        cache_invalidation.workflow_changed(self.cache, workflow.company_id, workflow.id)
