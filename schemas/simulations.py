from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import Field, model_validator

from common.enums import SimulationStatus
from common.validators import MAX_ID, Name, ShortText
from schemas.base import InputSchema, Schema

MAX_HORIZON_MONTHS = 120
MAX_HOURLY_COST = 10_000
MAX_DEPARTMENTS = 50


class SimulationParametersInput(InputSchema):
    # strict: a JSON number, never `true` or "0.5" taken for one (an integer is still a number).
    adoption_rate: float = Field(
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="share of the automatable work adopted",
    )
    horizon_months: int = Field(
        ge=1, le=MAX_HORIZON_MONTHS, strict=True, description="months simulated"
    )
    ramp_months: int = Field(
        ge=0,
        le=MAX_HORIZON_MONTHS,
        strict=True,
        description="months to reach `adoption_rate` linearly from 0 (0: from the first month); "
        "at most `horizon_months`",
    )
    hourly_cost: float = Field(
        gt=0,
        le=MAX_HOURLY_COST,
        strict=True,
        allow_inf_nan=False,
        description="cost of one hour of work",
    )
    departments: list[ShortText] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DEPARTMENTS,
        description="only the workflows of these departments (exact names); omit for all",
    )

    @model_validator(mode="after")
    def _ramp_within_horizon(self) -> Self:
        if self.ramp_months > self.horizon_months:
            raise ValueError("ramp_months must not exceed horizon_months")
        if self.departments is not None:
            # The same department twice changes nothing; keep the first spelling and order.
            self.departments = list(dict.fromkeys(self.departments))
        return self


class SimulationCreate(InputSchema):
    name: Name
    parameters: SimulationParametersInput
    company_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="admin only: simulate another company"
    )


class SimulationParameters(Schema):
    adoption_rate: float
    horizon_months: int
    ramp_months: int
    hourly_cost: float
    departments: list[str] | None = None


class MonthlySavings(Schema):
    month: int
    adoption: float
    hours_saved: float
    cost_saved: float


class SavingsTotals(Schema):
    hours_saved: float
    cost_saved: float
    fte_equivalent: float = Field(description="average hours saved a month / 160")


class DepartmentSavings(Schema):
    department: str | None
    hours_saved: float
    cost_saved: float


class WorkflowSavings(Schema):
    id: int
    name: str
    department: str | None
    hours_saved: float


class SimulationBaseline(Schema):
    workflows_in_scope: int
    completed_runs: int = Field(description="completed runs in the history window")
    runs_per_month: float
    full_adoption_hours_per_month: float
    history_window_days: int
    hours_per_fte_month: int


class SimulationResults(Schema):
    monthly: list[MonthlySavings]
    totals: SavingsTotals
    by_department: list[DepartmentSavings]
    top_workflows: list[WorkflowSavings] = Field(description="up to 10, most hours saved first")
    baseline: SimulationBaseline


class SimulationSummary(Schema):
    """A list item: the totals without the monthly series."""

    id: int
    company_id: int
    created_by: int | None
    name: str
    status: SimulationStatus
    parameters: SimulationParameters
    totals: SavingsTotals | None
    completed_at: datetime | None
    created_at: datetime


class Simulation(Schema):
    id: int
    company_id: int
    created_by: int | None
    name: str
    status: SimulationStatus
    parameters: SimulationParameters
    results: SimulationResults | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
