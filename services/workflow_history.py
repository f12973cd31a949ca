"""Runs of workflows by users: recording the caller's runs and reading a user's history.

The history grows without bound, so a user's runs are read by keyset, never by offset: the
cursor carries the last (started_at, id) seen and the next page starts strictly below it, which
costs the same on page 1000 as on page 1 (see `page_statement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import RunStatus, WorkflowStatus
from common.exceptions import BadRequestError, ConflictError, FieldError, ValidationFailedError
from common.pagination import CursorCodec
from common.principal import Principal
from models import UserWorkflowHistory, Workflow
from schemas.base import CursorPage
from schemas.workflows import MAX_RUN_SECONDS, WorkflowRun, WorkflowRunCreate
from services import cache_invalidation
from services.base_service import BaseService
from services.cache_service import RequestCache
from services.users import UserService
from services.workflows import WorkflowService
from settings.config import Settings

CURSOR_PURPOSE = "workflow-history"
MAX_CURSOR_LENGTH = 512  # a real cursor is about 80 characters
# Clients' clocks drift; a run reported a few seconds "in the future" is still a real run.
CLOCK_SKEW = timedelta(seconds=60)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_RUN = timedelta(seconds=MAX_RUN_SECONDS)


@dataclass(frozen=True, slots=True)
class RunTimes:
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: int | None


def resolve_run_times(data: WorkflowRunCreate, now: datetime) -> RunTimes:
    """Check a reported run's times against each other and the clock; fill in what follows.

    - No time may lie in the future (beyond the clock-skew leeway) or before 1970.
    - `started`: a run in progress; it has neither `completed_at` nor a duration.
    - `completed`: needs `completed_at` or `duration_seconds`; the other is derived
      (duration = completed_at - started_at, completed_at = started_at + duration); when both
      are sent they must agree to the second.
    - `abandoned`: like `completed`, except that the end may be unknown.
    - `started_at` defaults to now, except for a finished run whose end is known: then it is
      `completed_at - duration_seconds`, and with a duration alone the run just ended.
    """
    started, completed, duration = data.started_at, data.completed_at, data.duration_seconds
    errors: list[FieldError] = []
    for field, value in (("started_at", started), ("completed_at", completed)):
        if value is not None and value > now + CLOCK_SKEW:
            errors.append(FieldError(f"body.{field}", "must not be in the future"))
        elif value is not None and value < EARLIEST:
            errors.append(FieldError(f"body.{field}", "must not be before 1970-01-01"))
    if data.status is RunStatus.STARTED:
        for field, value in (("completed_at", completed), ("duration_seconds", duration)):
            if value is not None:
                errors.append(FieldError(f"body.{field}", "a run in progress has no end yet"))
    elif data.status is RunStatus.COMPLETED and completed is None and duration is None:
        errors.append(
            FieldError(
                "body.completed_at", "a completed run needs completed_at or duration_seconds"
            )
        )
    _raise_if(errors)

    # From here on every time is in range, so the arithmetic below cannot overflow.
    started = started.astimezone(UTC) if started else None
    completed = completed.astimezone(UTC) if completed else None
    span = None if duration is None else timedelta(seconds=duration)
    if started is None:
        if completed is not None and span is not None:
            started = completed - span
        elif span is not None:
            completed = now
            started = now - span
        else:
            started = now
    if started < EARLIEST:  # derived from an end near the epoch and a long duration
        errors.append(
            FieldError("body.started_at", "completed_at - duration_seconds is before 1970-01-01")
        )
        _raise_if(errors)
    if completed is None and span is not None:
        completed = started + span
        if completed > now + CLOCK_SKEW:
            errors.append(
                FieldError("body.duration_seconds", "started_at + duration lies in the future")
            )
    if completed is not None:
        if completed < started:
            errors.append(
                FieldError(
                    "body.completed_at",
                    "must not be before started_at (which defaults to now when not sent)",
                )
            )
        elif completed - started > MAX_RUN:
            errors.append(FieldError("body.completed_at", "a run lasts at most 31 days"))
        elif span is not None and abs(completed - started - span) >= timedelta(seconds=1):
            errors.append(
                FieldError("body.duration_seconds", "does not match completed_at - started_at")
            )
        elif span is None:
            duration = round((completed - started).total_seconds())
    _raise_if(errors)
    return RunTimes(started_at=started, completed_at=completed, duration_seconds=duration)


def _raise_if(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailedError(
            "The run's times are not consistent; see `errors`.", errors=errors
        )


class WorkflowHistoryService(BaseService[UserWorkflowHistory]):
    model = UserWorkflowHistory
    label = "Run"
    columns: ClassVar[tuple[Any, ...]] = (
        UserWorkflowHistory.id,
        UserWorkflowHistory.user_id,
        UserWorkflowHistory.workflow_id,
        Workflow.name.label("workflow_name"),
        UserWorkflowHistory.status,
        UserWorkflowHistory.started_at,
        UserWorkflowHistory.completed_at,
        UserWorkflowHistory.duration_seconds,
    )

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        cursors: CursorCodec,
        cache: RequestCache | None = None,
    ) -> None:
        super().__init__(session, principal, cache)
        self.cursors = cursors

    @classmethod
    def for_request(
        cls, session: AsyncSession, principal: Principal, settings: Settings, cache: RequestCache
    ) -> Self:
        cursors = CursorCodec(settings.secret_key.get_secret_value().encode(), CURSOR_PURPOSE)
        return cls(session, principal, cursors, cache)

    async def record(self, workflow_id: int, data: WorkflowRunCreate) -> WorkflowRun:
        """Record a run of the workflow by the caller, in the workflow's company."""
        times = resolve_run_times(data, datetime.now(UTC))
        workflow = await WorkflowService(self.session, self.principal, self.cache).get(workflow_id)
        # The admin sees every company's workflows but is no user of them: its runs would
        # count in another tenant's stats and dashboard.
        self.require(
            self.is_own_company(workflow.company_id),
            "Runs are recorded by users of the workflow's company.",
        )
        if workflow.status is WorkflowStatus.ARCHIVED:
            raise ConflictError(f"Workflow {workflow.id} is archived; it takes no new runs.")
        run = UserWorkflowHistory(
            user_id=self.principal.user_id,
            workflow_id=workflow.id,
            company_id=workflow.company_id,
            status=data.status,
            started_at=times.started_at,
            completed_at=times.completed_at,
            duration_seconds=times.duration_seconds,
        )
        self.session.add(run)
        await self.flush("The run could not be recorded.")
        cache_invalidation.run_recorded(self.cache, workflow.company_id, workflow.id)
        return WorkflowRun(
            id=run.id,
            user_id=run.user_id,
            workflow_id=run.workflow_id,
            workflow_name=workflow.name,
            status=data.status,
            started_at=times.started_at,
            completed_at=times.completed_at,
            duration_seconds=times.duration_seconds,
        )

    async def for_user(
        self, user_id: int, limit: int, cursor: str | None = None
    ) -> CursorPage[WorkflowRun]:
        """One page of the user's runs, newest first. Self, chro of the company and admin only;
        another tenant's user does not exist (404)."""
        position = self._decode(cursor) if cursor is not None else None
        company_id = self.principal.company_id
        if user_id != self.principal.user_id:
            user = await UserService(self.session, self.principal, self.cache).get(user_id)
            self.require_chro_or_admin()
            company_id = user.company_id
        statement = self.page_statement(user_id, company_id, limit + 1, position)
        rows = (await self.session.execute(statement)).all()
        items = [WorkflowRun.model_validate(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = self.cursors.encode([last.started_at.isoformat(), last.id])
        return CursorPage[WorkflowRun](items=items, next_cursor=next_cursor)

    def page_statement(
        self, user_id: int, company_id: int, rows: int, after: tuple[datetime, int] | None
    ) -> Select[Any]:
        """The user's runs newest first, strictly after the position `after`, at most `rows`.

        The position is a row-value comparison, `(started_at, id) < (:t, :id)`, which
        PostgreSQL turns into an index bound on (user_id, started_at DESC, id DESC): a deep page
        reads as few index entries as the first. (The `a < :t OR (a = :t AND id < :id)`
        spelling would not: the planner cannot bound a scan by an OR and filters every newer
        row instead.) SQLite has row values since 3.15.
        """
        history = UserWorkflowHistory
        statement = self.tenant_filter(
            select(*self.columns).join(Workflow, Workflow.id == history.workflow_id),
            company_id,
        ).where(history.user_id == user_id)
        if after is not None:
            # A plain tuple on the right: its values are bound with the columns' own types.
            statement = statement.where(tuple_(history.started_at, history.id) < after)
        return statement.order_by(history.started_at.desc(), history.id.desc()).limit(rows)

    def _decode(self, cursor: str) -> tuple[datetime, int]:
        if len(cursor) <= MAX_CURSOR_LENGTH:
            position = self.cursors.decode(cursor)  # 400 when forged or garbled
            if len(position) == 2 and isinstance(position[0], str):
                started_at, run_id = position
                try:
                    parsed = datetime.fromisoformat(started_at)
                except ValueError:
                    parsed = None
                if (
                    parsed is not None
                    and parsed.tzinfo is not None
                    and type(run_id) is int
                    and run_id >= 1
                ):
                    return parsed, run_id
        raise BadRequestError("The cursor is not valid; start again from the first page.")
