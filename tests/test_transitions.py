"""Transition detection on synthetic curves whose change points are known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from innerlens.analysis.transitions import change_points, detect_transitions, first_step_at_or_above, jump

STEPS = np.arange(0, 20_000, 100, dtype=float)


def sigmoid(centre: float, scale: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(STEPS - centre) / scale))


def test_grokking_curve_phases_are_found_within_one_evaluation() -> None:
    rng = np.random.default_rng(0)
    train = np.clip(sigmoid(400, 60) + rng.normal(0, 0.002, STEPS.size), 0, 1)
    val = 0.01 + 0.99 * sigmoid(12_000, 400)
    val_loss = np.exp(np.where(STEPS < 12_000, 1.5, -4.0) + rng.normal(0, 0.05, STEPS.size))
    result = detect_transitions(STEPS, train, val, val_loss, memorization_threshold=0.99, generalization_threshold=0.99)

    # sigmoid(t) >= 0.99 from t = centre + scale * ln(99)
    assert result.memorization_step == pytest.approx(400 + 60 * math.log(99), abs=100)
    assert result.generalization_step == pytest.approx(12_000 + 400 * math.log(0.98 / 0.01), abs=100)
    assert result.memorization_step < result.generalization_step
    # 10 % / 90 % of the rise: centre -/+ scale * ln 9
    assert result.jump.start == pytest.approx(12_000 - 400 * math.log(9), abs=100)
    assert result.jump.end == pytest.approx(12_000 + 400 * math.log(9), abs=100)
    assert result.jump.max_slope == pytest.approx(0.99 / (4 * 400), rel=0.1)
    assert result.change_points == [12_000.0]
    assert [name for name, *_ in result.phases] == ["memorization", "circuit formation", "cleanup"]


def test_no_generalization_is_reported_as_missing() -> None:
    train = sigmoid(400, 60)
    val = np.full(STEPS.size, 0.05)
    result = detect_transitions(STEPS, train, val, np.full(STEPS.size, 3.0))
    assert math.isnan(result.generalization_step) and math.isnan(result.jump.start)
    assert result.metrics()["grok/generalization_step"] == -1.0
    assert result.change_points == []


def test_change_points_find_two_planted_shifts_and_ignore_noise() -> None:
    rng = np.random.default_rng(1)
    level = np.where(STEPS < 5_000, 2.0, np.where(STEPS < 14_000, 0.5, -3.0))
    found = change_points(STEPS, level + rng.normal(0, 0.1, STEPS.size))
    assert len(found) == 2
    assert found[0] == pytest.approx(5_000, abs=200) and found[1] == pytest.approx(14_000, abs=200)
    assert change_points(STEPS, rng.normal(0, 0.1, STEPS.size)) == []


def test_first_crossing_and_flat_jump() -> None:
    assert first_step_at_or_above(STEPS, STEPS / STEPS.max(), 0.5) == pytest.approx(10_000, abs=100)
    assert math.isnan(first_step_at_or_above(STEPS, np.zeros(STEPS.size), 0.5))
    assert math.isnan(jump(STEPS, np.ones(STEPS.size)).start)


def test_collapses_count_each_fall_after_memorisation_once() -> None:
    from innerlens.analysis.transitions import collapses

    assert collapses([0.1, 0.5, 0.995, 1.0, 1.0]) == 0
    assert collapses([0.1, 0.995, 0.6, 0.5, 0.999, 0.7, 1.0]) == 2
    assert collapses([0.1, 0.5, 0.3]) == 0  # never memorised: nothing to collapse from
