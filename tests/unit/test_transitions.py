"""Transition detection on synthetic curves whose change points are known."""
from __future__ import annotations

import dataclasses
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
    assert len(result.change_points) == 1 and result.change_points[0] == pytest.approx(12_000, abs=200)  # a step in log loss
    assert [name for name, *_ in result.phases] == ["memorization", "circuit formation", "cleanup"]


def test_no_generalization_is_reported_as_missing() -> None:
    train = sigmoid(400, 60)
    val = np.full(STEPS.size, 0.05)
    result = detect_transitions(STEPS, train, val, np.full(STEPS.size, 3.0))
    assert math.isnan(result.generalization_step) and math.isnan(result.jump.start)
    assert result.metrics()["grok/generalization_step"] == -1.0
    assert result.change_points == []


def test_change_points_find_none_on_a_noisy_line_and_the_kinks_of_a_planted_two_phase_curve() -> None:
    rng = np.random.default_rng(1)
    for seed in range(5):  # the old mean-shift cost found 42 on such a line
        noise = np.random.default_rng(seed).normal(0, 0.01, STEPS.size)
        assert change_points(STEPS, 1.0 - 1e-4 * STEPS + noise) == []
        assert change_points(STEPS, noise) == []
    # plateau, a linear descent from 6,000 to 12,000, plateau: the shape of grokking's log loss
    planted = np.where(STEPS < 6_000, 2.0, np.where(STEPS < 12_000, 2.0 - (STEPS - 6_000) * 5e-4, -1.0))
    found = change_points(STEPS, planted + rng.normal(0, 0.05, STEPS.size))
    assert len(found) == 2
    assert found[0] == pytest.approx(6_000, abs=500) and found[1] == pytest.approx(12_000, abs=500)
    kink = np.where(STEPS < 8_000, 0.0, -(STEPS - 8_000) * 5e-4)
    assert change_points(STEPS, kink + rng.normal(0, 0.01, STEPS.size)) == [pytest.approx(8_000, abs=200)]


def test_first_crossing_and_flat_jump() -> None:
    assert first_step_at_or_above(STEPS, STEPS / STEPS.max(), 0.5) == pytest.approx(10_000, abs=100)
    assert math.isnan(first_step_at_or_above(STEPS, np.zeros(STEPS.size), 0.5))
    assert math.isnan(jump(STEPS, np.ones(STEPS.size)).start)


def test_collapses_count_each_fall_after_memorisation_once() -> None:
    from innerlens.analysis.transitions import collapses

    assert collapses([0.1, 0.5, 0.995, 1.0, 1.0]) == 0
    assert collapses([0.1, 0.995, 0.6, 0.5, 0.999, 0.7, 1.0]) == 2
    assert collapses([0.1, 0.5, 0.3]) == 0  # never memorised: nothing to collapse from


def test_phase_boundaries_come_from_the_progress_measures_when_they_were_logged() -> None:
    from innerlens.analysis.transitions import progress_phases

    rng = np.random.default_rng(3)
    # excluded loss falls with memorisation until 1,500, then rises as the key frequencies take over
    excluded = np.where(STEPS < 1_500, 4.0 * np.exp(-STEPS / 500), 4.0 * np.exp(-3.0) + 1e-4 * (STEPS - 1_500))
    # restricted loss stays high, then falls (on a log scale) from 8,000 to 12,000 and stays low
    log_restricted = np.where(STEPS < 8_000, 1.0, np.where(STEPS < 12_000, 1.0 - (STEPS - 8_000) * 2.5e-3, -9.0))
    noise = rng.normal(0, 0.01, STEPS.size)
    phases = progress_phases(STEPS, excluded * np.exp(noise), np.exp(log_restricted + noise))
    assert phases.circuit_formation_start == pytest.approx(1_500, abs=200)
    assert phases.cleanup_start == pytest.approx(8_000 + 0.1 * 4_000, abs=200)  # 10 % of the fall
    assert phases.cleanup_end == pytest.approx(8_000 + 0.9 * 4_000, abs=200)  # 90 % of it

    train = sigmoid(400, 60)
    val = 0.01 + 0.99 * sigmoid(12_000, 400)
    accuracy_only = detect_transitions(STEPS, train, val, np.exp(-val))
    with_measures = dataclasses.replace(accuracy_only, progress=phases)
    assert [name for name, *_ in with_measures.phases] == ["memorization", "circuit formation", "cleanup"]
    assert with_measures.phases[1][1:] == (phases.circuit_formation_start, phases.cleanup_start)
    assert with_measures.phases != accuracy_only.phases  # the accuracy proxies are the fallback only
    assert with_measures.metrics()["grok/cleanup_end_step"] == phases.cleanup_end
    assert accuracy_only.metrics()["grok/cleanup_end_step"] == -1.0
