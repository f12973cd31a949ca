"""The arithmetic of an AI-adoption simulation: pure functions, no I/O, no database.

Definitions (DESIGN.md, "Simulation"):

- runs per month of a workflow = its completed runs in the last 90 days / 3;
- automatable minutes per run = Σ step minutes × step automation score;
- adoption in month m (1..horizon) = adoption_rate × min(1, m / ramp_months), or adoption_rate
  from the first month when ramp_months is 0: a linear ramp from 0 (month 0) that reaches the
  rate at month `ramp_months` and then holds;
- hours saved in month m = Σ over workflows of runs per month × automatable minutes / 60 ×
  adoption(m); cost saved = hours × hourly cost;
- FTE equivalent = average hours saved per month / 160.

Everything is computed at full precision; only the output is rounded (2 decimals; adoption 4).
So a total is the rounded sum of the exact monthly values, and may differ by a cent from the sum
of the rounded monthly values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HISTORY_WINDOW_DAYS = 90
HISTORY_WINDOW_MONTHS = 3
HOURS_PER_FTE_MONTH = 160
TOP_WORKFLOWS = 10


@dataclass(frozen=True, slots=True)
class Assumptions:
    adoption_rate: float
    horizon_months: int
    ramp_months: int
    hourly_cost: float


@dataclass(frozen=True, slots=True)
class WorkflowInput:
    """One workflow in scope, with the count of its completed runs in the history window."""

    id: int
    name: str
    department: str | None
    steps: Sequence[Mapping[str, Any]]
    completed_runs: int


def _number(value: Any) -> float:
    """A finite float from stored JSON, 0 for anything else.

    Steps are validated when written, but a stored row that predates a rule (or was edited by
    hand) must not turn a simulation into a 500.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def automatable_minutes(steps: Iterable[Mapping[str, Any]]) -> float:
    """Σ minutes × automation score over the steps (negative minutes and scores count as 0,
    scores above 1 as 1)."""
    return math.fsum(
        max(0.0, _number(step.get("minutes")))
        * min(1.0, max(0.0, _number(step.get("automation_score"))))
        for step in steps
    )


def automation_potential(steps: Iterable[Mapping[str, Any]]) -> float:
    """The minutes-weighted mean of the step scores, in 0..1 (0 for a workflow without minutes).

    A step's weight is its share of the workflow's time: automating a long step saves more
    than automating a short one. The single definition: workflows store it on every write,
    simulations and the seeders use it too.
    """
    steps = list(steps)
    minutes = math.fsum(max(0.0, _number(step.get("minutes"))) for step in steps)
    if minutes <= 0:
        return 0.0
    # Clamped because float rounding must never trip the table's 0..1 check constraint.
    return min(1.0, max(0.0, automatable_minutes(steps) / minutes))


def adoption_curve(adoption_rate: float, ramp_months: int, horizon_months: int) -> list[float]:
    """Adoption for months 1..horizon_months."""
    if ramp_months <= 0:
        return [adoption_rate] * horizon_months
    return [adoption_rate * min(1.0, month / ramp_months) for month in range(1, horizon_months + 1)]


def runs_per_month(completed_runs: int) -> float:
    return completed_runs / HISTORY_WINDOW_MONTHS


def full_adoption_hours(workflow: WorkflowInput) -> float:
    """Hours a month the workflow would save at 100 % adoption."""
    return runs_per_month(workflow.completed_runs) * automatable_minutes(workflow.steps) / 60


def _money(value: float) -> float:
    return round(value, 2)


def simulate(assumptions: Assumptions, workflows: Sequence[WorkflowInput]) -> dict[str, Any]:
    """The results document stored on a simulation (and returned by the API).

    Linear in the number of workflows plus the horizon: every workflow's monthly savings are
    its full-adoption hours × adoption(m), so a workflow's total is its full-adoption hours ×
    Σ adoption(m), and a month's total is Σ full-adoption hours × adoption(m).
    """
    curve = adoption_curve(
        assumptions.adoption_rate, assumptions.ramp_months, assumptions.horizon_months
    )
    adoption_months = sum(curve)  # Σ adoption(m): "months at full adoption"
    cost = assumptions.hourly_cost

    per_workflow = [(w, full_adoption_hours(w)) for w in workflows]
    base_hours = sum(hours for _, hours in per_workflow)
    total_hours = base_hours * adoption_months

    monthly = [
        {
            "month": month,
            "adoption": round(adoption, 4),
            "hours_saved": _money(base_hours * adoption),
            "cost_saved": _money(base_hours * adoption * cost),
        }
        for month, adoption in enumerate(curve, start=1)
    ]

    departments: dict[str | None, float] = {}
    for workflow, hours in per_workflow:
        departments[workflow.department] = departments.get(workflow.department, 0.0) + hours
    by_department = [
        {
            "department": department,
            "hours_saved": _money(hours * adoption_months),
            "cost_saved": _money(hours * adoption_months * cost),
        }
        for department, hours in sorted(
            departments.items(), key=lambda item: (-item[1], item[0] is None, item[0] or "")
        )
    ]

    ranked = sorted(per_workflow, key=lambda item: (-item[1], item[0].name, item[0].id))
    top_workflows = [
        {
            "id": workflow.id,
            "name": workflow.name,
            "department": workflow.department,
            "hours_saved": _money(hours * adoption_months),
        }
        for workflow, hours in ranked[:TOP_WORKFLOWS]
    ]

    return {
        "monthly": monthly,
        "totals": {
            "hours_saved": _money(total_hours),
            "cost_saved": _money(total_hours * cost),
            "fte_equivalent": _money(
                total_hours / assumptions.horizon_months / HOURS_PER_FTE_MONTH
            ),
        },
        "by_department": by_department,
        "top_workflows": top_workflows,
        "baseline": {
            "workflows_in_scope": len(per_workflow),
            "completed_runs": sum(w.completed_runs for w in workflows),
            "runs_per_month": _money(sum(runs_per_month(w.completed_runs) for w in workflows)),
            "full_adoption_hours_per_month": _money(base_hours),
            "history_window_days": HISTORY_WINDOW_DAYS,
            "hours_per_fte_month": HOURS_PER_FTE_MONTH,
        },
    }
