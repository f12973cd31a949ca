"""The CHRO dashboard: one company at a glance, every figure an aggregate in the database.

Five statements whatever the size of the company (plus the caller's authentication): the
company with its 30-day activity, headcount by department, top workflows by runs, documents by
status, latest simulations. Nothing loops over users, workflows or runs in Python. The result
is cached per company (CACHE_TTL_DASHBOARD) and dropped by every write in that company.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, distinct, func, select, true

from common.enums import DocumentStatus, RunStatus
from common.exceptions import FieldError, NotFoundError, ValidationFailedError
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from models.base import utcnow
from schemas.dashboard import ChroDashboard
from services.base_service import BaseService, of_tenant
from services.cache_invalidation import Tags
from services.cache_service import CacheName, cached, tenant_scope

WINDOW_DAYS = 30
TOP_WORKFLOWS = 5
LATEST_SIMULATIONS = 5


class DashboardService(BaseService[Company]):
    model = Company
    label = "Company"

    def _target(self, company_id: int | None) -> int:
        """Whose dashboard: the chro's own company; for the admin, `company_id` (required).

        Decided before the cache is consulted, so a cached dashboard can only ever answer a
        caller who may see that company.
        """
        self.require_chro_or_admin()
        if self.principal.is_admin:
            if company_id is None:
                raise ValidationFailedError(
                    "The admin must choose a company.",
                    errors=[FieldError("query.company_id", "required for the admin role")],
                )
            return company_id
        if company_id is not None and not self.is_own_company(company_id):
            raise NotFoundError(f"Company {company_id} does not exist.")
        return self.principal.company_id

    async def build(self, company_id: int | None = None) -> ChroDashboard:
        return await self._company_dashboard(self._target(company_id))

    # Private: its entry is keyed by `company_id` alone and shared by everyone who may see that
    # company (its chro, the admin), so a hit answers whoever asks for that id without any
    # check. Only `build()` calls it, once `_target()` has authorised the caller. Every write
    # in the company drops it (services/cache_invalidation.py); `generated_at` says how fresh a
    # cached one is.
    @cached(
        CacheName.DASHBOARD,
        scope=lambda self, company_id: tenant_scope(company_id),
        tags=lambda self, company_id: [Tags.dashboard(company_id)],
        lock=True,  # a dozen aggregate queries: worth one computation across processes
    )
    async def _company_dashboard(self, company_id: int) -> ChroDashboard:
        now = utcnow()
        since = now - timedelta(days=WINDOW_DAYS)
        company = await self._company_activity(company_id, since)
        if company is None:
            raise NotFoundError(f"Company {company_id} does not exist.")
        headcount = await self._headcount(company_id)
        documents = await self._documents(company_id)
        finished = company.completed_runs + company.abandoned_runs
        return ChroDashboard.model_validate(
            {
                "company": {"id": company.id, "name": company.name},
                "generated_at": now,
                "window_days": WINDOW_DAYS,
                "headcount": {
                    "total": sum(row["headcount"] for row in headcount),
                    "by_department": headcount,
                },
                "activity": {
                    "runs": company.runs,
                    "active_users": company.active_users,
                    "completed_runs": company.completed_runs,
                    "abandoned_runs": company.abandoned_runs,
                    "in_progress_runs": company.runs - finished,
                    "completion_rate": round(company.completed_runs / finished, 4)
                    if finished
                    else None,
                },
                "top_workflows": await self._top_workflows(company_id, since),
                "documents": {"total": sum(documents.values()), "by_status": documents},
                "latest_simulations": await self._latest_simulations(company_id),
            }
        )

    async def _company_activity(self, company_id: int, since: datetime) -> Row[Any] | None:
        """The company row and its activity in the window: one aggregate joined to one row."""
        history = UserWorkflowHistory
        activity = (
            select(
                func.count(history.id).label("runs"),
                func.count(distinct(history.user_id)).label("active_users"),
                func.count(case((history.status == RunStatus.COMPLETED, 1))).label(
                    "completed_runs"
                ),
                func.count(case((history.status == RunStatus.ABANDONED, 1))).label(
                    "abandoned_runs"
                ),
            )
            .where(of_tenant(history, company_id), history.started_at >= since)
            .subquery()
        )
        # An aggregate without GROUP BY yields exactly one row, so the join keeps the company.
        statement = self.tenant_filter(
            select(Company.id, Company.name, *activity.c)
            .select_from(Company)
            .join(activity, true())
            .where(of_tenant(Company, company_id))
        )
        return (await self.session.execute(statement)).one_or_none()

    async def _headcount(self, company_id: int) -> list[dict[str, Any]]:
        headcount = func.count(User.id)
        statement = (
            select(User.department, headcount.label("headcount"))
            .where(of_tenant(User, company_id), User.is_active)
            .group_by(User.department)
            .order_by(headcount.desc(), User.department.asc().nulls_last())
        )
        rows = await self.session.execute(statement)
        return [{"department": row.department, "headcount": row.headcount} for row in rows]

    async def _top_workflows(self, company_id: int, since: datetime) -> list[dict[str, Any]]:
        history = UserWorkflowHistory
        runs = func.count(history.id)
        statement = (
            select(Workflow.id, Workflow.name, Workflow.department, runs.label("runs"))
            .join(history, history.workflow_id == Workflow.id)
            .where(
                of_tenant(Workflow, company_id),
                of_tenant(history, company_id),
                history.started_at >= since,
            )
            .group_by(Workflow.id)
            .order_by(runs.desc(), Workflow.id)
            .limit(TOP_WORKFLOWS)
        )
        return [dict(row._mapping) for row in await self.session.execute(statement)]

    async def _documents(self, company_id: int) -> dict[str, int]:
        statement = (
            select(Document.status, func.count(Document.id))
            .where(of_tenant(Document, company_id))
            .group_by(Document.status)
        )
        counts = {status: count for status, count in await self.session.execute(statement)}
        return {status.value: counts.get(status, 0) for status in DocumentStatus}

    async def _latest_simulations(self, company_id: int) -> list[dict[str, Any]]:
        statement = (
            select(
                Simulation.id,
                Simulation.name,
                Simulation.status,
                Simulation.created_at,
                Simulation.results[("totals", "hours_saved")].as_float().label("hours_saved"),
            )
            .where(of_tenant(Simulation, company_id))
            .order_by(Simulation.created_at.desc(), Simulation.id.desc())
            .limit(LATEST_SIMULATIONS)
        )
        return [dict(row._mapping) for row in await self.session.execute(statement)]
