from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.base import Schema


class DashboardCompany(Schema):
    id: int
    name: str


class DepartmentHeadcount(Schema):
    department: str | None = Field(description="null for users without a department")
    headcount: int


class Headcount(Schema):
    total: int = Field(description="active users")
    by_department: list[DepartmentHeadcount] = Field(description="largest first")


class Activity(Schema):
    runs: int = Field(description="runs started in the window, whatever their status")
    active_users: int = Field(description="distinct users who started a run in the window")
    completed_runs: int
    abandoned_runs: int
    in_progress_runs: int = Field(description="runs still `started`")
    completion_rate: float | None = Field(
        description="completed / (completed + abandoned), 0..1; runs still in progress do not "
        "count; null when no run has finished"
    )


class WorkflowRuns(Schema):
    id: int
    name: str
    department: str | None
    runs: int


class Documents(Schema):
    total: int
    by_status: dict[str, int] = Field(description="every status, 0 when none")


class LatestSimulation(Schema):
    id: int
    name: str
    status: str
    created_at: datetime
    hours_saved: float | None = Field(description="total hours saved; null when it failed")


class ChroDashboard(Schema):
    company: DashboardCompany
    generated_at: datetime
    window_days: int = Field(description="activity and top workflows cover this many days")
    headcount: Headcount
    activity: Activity
    top_workflows: list[WorkflowRuns] = Field(description="up to 5, most runs in the window")
    documents: Documents
    latest_simulations: list[LatestSimulation] = Field(description="up to 5, newest first")
