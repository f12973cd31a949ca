"""The simulation arithmetic against numbers worked out by hand."""

from __future__ import annotations

import pytest

from services.simulation_model import (
    Assumptions,
    WorkflowInput,
    adoption_curve,
    automatable_minutes,
    automation_potential,
    simulate,
)


def steps(*pairs: tuple[float, float]) -> list[dict[str, float | str]]:
    return [
        {"name": f"s{i}", "minutes": m, "automation_score": s} for i, (m, s) in enumerate(pairs)
    ]


# Invoices (Finance): 30 min x 0.5 + 10 min x 1.0 = 25 automatable minutes a run;
#   36 completed runs in 90 days -> 12 runs a month -> 12 x 25 / 60 = 5 h a month at full adoption.
# Screening (HR): 60 min x 0.25 = 15 minutes; 24 runs -> 8 a month -> 8 x 15 / 60 = 2 h a month.
# Filing (HR): 20 min x 0.0 = 0 minutes: saves nothing, however often it runs (30 runs).
# Together: 7 h a month at full adoption.
INVOICES = WorkflowInput(1, "Invoices", "Finance", steps((30, 0.5), (10, 1.0)), 36)
SCREENING = WorkflowInput(2, "Screening", "HR", steps((60, 0.25)), 24)
FILING = WorkflowInput(3, "Filing", "HR", steps((20, 0.0)), 30)


def test_hand_computed_example() -> None:
    # adoption_rate 0.5, ramp 2 months, horizon 4 months, 50 an hour:
    #   adoption(m) = 0.5 x min(1, m / 2): month 1 = 0.25, months 2..4 = 0.5; sum = 1.75.
    #   hours(m) = 7 x adoption(m): 1.75, 3.5, 3.5, 3.5; cost = hours x 50: 87.5, 175, 175, 175.
    #   total hours = 7 x 1.75 = 12.25; cost = 612.5;
    #   FTE = 12.25 / 4 months / 160 h = 0.019140625 -> 0.02.
    #   Finance = 5 x 1.75 = 8.75 h (437.5); HR = 2 x 1.75 + 0 = 3.5 h (175).
    results = simulate(Assumptions(0.5, 4, 2, 50.0), [INVOICES, SCREENING, FILING])

    assert results["monthly"] == [
        {"month": 1, "adoption": 0.25, "hours_saved": 1.75, "cost_saved": 87.5},
        {"month": 2, "adoption": 0.5, "hours_saved": 3.5, "cost_saved": 175.0},
        {"month": 3, "adoption": 0.5, "hours_saved": 3.5, "cost_saved": 175.0},
        {"month": 4, "adoption": 0.5, "hours_saved": 3.5, "cost_saved": 175.0},
    ]
    assert results["totals"] == {"hours_saved": 12.25, "cost_saved": 612.5, "fte_equivalent": 0.02}
    assert results["by_department"] == [
        {"department": "Finance", "hours_saved": 8.75, "cost_saved": 437.5},
        {"department": "HR", "hours_saved": 3.5, "cost_saved": 175.0},
    ]
    assert results["top_workflows"] == [
        {"id": 1, "name": "Invoices", "department": "Finance", "hours_saved": 8.75},
        {"id": 2, "name": "Screening", "department": "HR", "hours_saved": 3.5},
        {"id": 3, "name": "Filing", "department": "HR", "hours_saved": 0.0},
    ]
    assert results["baseline"] == {
        "workflows_in_scope": 3,
        "completed_runs": 90,
        "runs_per_month": 30.0,  # (36 + 24 + 30) / 3
        "full_adoption_hours_per_month": 7.0,
        "history_window_days": 90,
        "hours_per_fte_month": 160,
    }


def test_rounding_happens_only_at_the_output() -> None:
    # 10 runs in 90 days -> 10/3 a month; 7 minutes x 1.0 -> 10/3 x 7 / 60 = 7/18 h a month
    #   = 0.38888... h. adoption 0.6 with ramp 3 over 3 months: 0.2, 0.4, 0.6 (sum 1.2).
    #   months: 7/18 x 0.2 = 0.07777 -> 0.08; x 0.4 = 0.15555 -> 0.16; x 0.6 = 0.23333 -> 0.23.
    #   total = 7/18 x 1.2 = 0.46666 -> 0.47.
    #   Cost at 33.33 an hour comes from the exact hours: 0.46666 x 33.33 = 15.554 -> 15.55,
    #   not from the rounded 0.47 (0.47 x 33.33 = 15.67); months: 0.07777 x 33.33 = 2.5923 ->
    #   2.59, 0.15555 x 33.33 = 5.1847 -> 5.18, 0.23333 x 33.33 = 7.777 -> 7.78.
    workflow = WorkflowInput(7, "Tiny", None, steps((7, 1.0)), 10)
    results = simulate(Assumptions(0.6, 3, 3, 33.33), [workflow])

    assert [m["adoption"] for m in results["monthly"]] == [0.2, 0.4, 0.6]
    assert [m["hours_saved"] for m in results["monthly"]] == [0.08, 0.16, 0.23]
    assert [m["cost_saved"] for m in results["monthly"]] == [2.59, 5.18, 7.78]
    # FTE = 0.46666 / 3 / 160 = 0.00097 -> 0.0
    assert results["totals"] == {"hours_saved": 0.47, "cost_saved": 15.55, "fte_equivalent": 0.0}
    assert results["by_department"] == [
        {"department": None, "hours_saved": 0.47, "cost_saved": 15.55}
    ]


def test_no_ramp_means_full_adoption_from_the_first_month() -> None:
    assert adoption_curve(0.4, 0, 3) == [0.4, 0.4, 0.4]


def test_ramp_equal_to_horizon_reaches_the_rate_in_the_last_month() -> None:
    assert adoption_curve(1.0, 4, 4) == [0.25, 0.5, 0.75, 1.0]


def test_ramp_holds_after_it_ends() -> None:
    assert adoption_curve(0.9, 3, 6) == pytest.approx([0.3, 0.6, 0.9, 0.9, 0.9, 0.9])


def test_no_workflows_give_zero_savings_over_the_whole_horizon() -> None:
    results = simulate(Assumptions(0.5, 12, 6, 80.0), [])

    assert len(results["monthly"]) == 12
    assert all(m["hours_saved"] == 0 and m["cost_saved"] == 0 for m in results["monthly"])
    assert results["monthly"][-1]["adoption"] == 0.5
    assert results["totals"] == {"hours_saved": 0.0, "cost_saved": 0.0, "fte_equivalent": 0.0}
    assert results["by_department"] == []
    assert results["top_workflows"] == []


def test_fte_equivalent_is_average_monthly_hours_over_160() -> None:
    # 480 runs in 90 days -> 160 a month; 60 minutes x 1.0 -> 160 h a month at full adoption.
    # adoption 1.0, no ramp, 6 months -> 960 h; 960 / 6 / 160 = 1.0 FTE.
    workflow = WorkflowInput(1, "Full-time", "Ops", steps((60, 1.0)), 480)
    results = simulate(Assumptions(1.0, 6, 0, 10.0), [workflow])
    assert results["totals"] == {"hours_saved": 960.0, "cost_saved": 9600.0, "fte_equivalent": 1.0}


def test_top_workflows_keep_the_ten_that_save_most() -> None:
    # Workflow n: n runs a month (3n in 90 days) of 60 automatable minutes -> n h a month.
    workflows = [
        WorkflowInput(n, f"W{n:02d}", "Ops", steps((60, 1.0)), 3 * n) for n in range(1, 13)
    ]
    results = simulate(Assumptions(1.0, 1, 0, 1.0), workflows)
    assert [w["id"] for w in results["top_workflows"]] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3]
    assert results["top_workflows"][0]["hours_saved"] == 12.0


def test_departments_rank_by_hours_then_name_and_unassigned_last_on_ties() -> None:
    one_hour = steps((60, 1.0))
    workflows = [
        WorkflowInput(1, "a", None, one_hour, 3),
        WorkflowInput(2, "b", "Sales", one_hour, 3),
        WorkflowInput(3, "c", "Finance", one_hour, 3),
        WorkflowInput(4, "d", "Ops", one_hour, 6),
    ]
    results = simulate(Assumptions(1.0, 1, 0, 1.0), workflows)
    assert [d["department"] for d in results["by_department"]] == ["Ops", "Finance", "Sales", None]


def test_malformed_steps_count_as_nothing_instead_of_failing() -> None:
    stored = [
        {"name": "ok", "minutes": 10, "automation_score": 0.5},
        {"name": "no minutes"},
        {"name": "text", "minutes": "ten", "automation_score": 1},
        {"name": "bool", "minutes": True, "automation_score": 1},
        {"name": "negative", "minutes": -5, "automation_score": 1},
        {"name": "too sure", "minutes": 4, "automation_score": 3},  # counts as 1.0
    ]
    assert automatable_minutes(stored) == 5 + 4
    assert automation_potential(steps((30, 0.5), (10, 1.0))) == pytest.approx(25 / 40)
    assert automation_potential([]) == 0.0
