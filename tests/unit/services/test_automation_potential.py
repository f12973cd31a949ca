"""The automation potential: the minutes-weighted mean of the step scores."""

from __future__ import annotations

import pytest

from schemas.workflows import WorkflowStep
from services.workflows import automation_potential


def steps(*pairs: tuple[float, float]) -> list[WorkflowStep]:
    return [
        WorkflowStep(name=f"Step {i}", minutes=minutes, automation_score=score)
        for i, (minutes, score) in enumerate(pairs, 1)
    ]


def test_hand_computed_example() -> None:
    # (10 x 0.5 + 30 x 0.9 + 60 x 0.1) / (10 + 30 + 60) = (5 + 27 + 6) / 100 = 0.38
    assert automation_potential(steps((10, 0.5), (30, 0.9), (60, 0.1))) == pytest.approx(0.38)


def test_long_steps_weigh_more_than_short_ones() -> None:
    # An unweighted mean would give 0.5 both ways; the weighting tells them apart.
    # (90 x 1 + 10 x 0) / 100 = 0.9 and (10 x 1 + 90 x 0) / 100 = 0.1
    assert automation_potential(steps((90, 1.0), (10, 0.0))) == pytest.approx(0.9)
    assert automation_potential(steps((10, 1.0), (90, 0.0))) == pytest.approx(0.1)


def test_fractional_minutes() -> None:
    # (0.5 x 0.2 + 1.5 x 0.6) / 2 = (0.1 + 0.9) / 2 = 0.5
    assert automation_potential(steps((0.5, 0.2), (1.5, 0.6))) == pytest.approx(0.5)


def test_one_step_is_its_own_score() -> None:
    assert automation_potential(steps((45, 0.35))) == pytest.approx(0.35)


@pytest.mark.parametrize("score", [0.0, 1.0])
def test_bounds_are_exact(score: float) -> None:
    # Exactly 0 and 1, never 1.0000000000000002: the table's check constraint is 0..1.
    result = automation_potential(steps((7, score), (13, score), (0.1, score), (10_080, score)))
    assert result == score


def test_stays_in_range_for_many_uneven_steps() -> None:
    result = automation_potential(steps(*[(0.1 + i * 3.7, 0.99) for i in range(100)]))
    assert 0.0 <= result <= 1.0
    assert result == pytest.approx(0.99)


def test_no_steps_is_zero() -> None:
    assert automation_potential([]) == 0.0
