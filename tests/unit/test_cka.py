"""CKA against its known properties and a direct Gram-matrix computation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from innerlens.analysis.cka import cka_interval, debiased_cka, linear_cka


def _gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s definition, literally: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with H K H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l)))


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 10))
    y = x @ rng.normal(size=(10, 6)) + 0.5 * rng.normal(size=(120, 6))
    return x, y


def test_identical_inputs_give_one(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_matches_the_gram_definition(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    assert abs(linear_cka(x, y) - _gram_cka(x, y)) < 1e-6
    assert 0.3 < linear_cka(x, y) < 0.99  # a non-trivial value, so the match means something


def test_invariant_to_orthogonal_maps_isotropic_scaling_and_shifts(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    q = ortho_group.rvs(10, random_state=1)
    reference = linear_cka(x, y)
    assert linear_cka(3.7 * x @ q + 5.0, y) == pytest.approx(reference, abs=1e-10)
    assert debiased_cka(3.7 * x @ q + 5.0, y) == pytest.approx(debiased_cka(x, y), abs=1e-10)


def test_not_invariant_to_general_invertible_maps(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    stretch = np.diag(np.geomspace(1.0, 50.0, 10))  # invertible, not orthogonal-times-scalar
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 0.02


def test_debiased_cka_is_near_zero_for_independent_data() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 50)), rng.normal(size=(300, 50))
    assert abs(debiased_cka(x, y)) < 0.03
    assert linear_cka(x, y) > 0.1  # the biased estimate is inflated by width, which is why debiasing matters


def test_interval_contains_the_value_and_is_reproducible(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    interval = cka_interval(x, y, debiased_cka, repeats=50, seed=0)
    assert interval.low <= interval.value <= interval.high
    assert interval.high - interval.low < 0.3
    assert cka_interval(x, y, repeats=20, seed=5) == cka_interval(x, y, repeats=20, seed=5)
