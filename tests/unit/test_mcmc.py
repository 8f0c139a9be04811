"""Chain diagnostics against chains whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from innerlens.analysis.mcmc import effective_sample_size, split_rhat


def _ar1(rho: float, chains: int, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((chains, draws))
    for t in range(1, draws):
        out[:, t] = rho * out[:, t - 1] + rng.normal(size=chains) * np.sqrt(1 - rho**2)
    return out


def test_rhat_is_one_for_chains_of_one_distribution_and_large_when_a_chain_sits_elsewhere() -> None:
    mixed = np.random.default_rng(0).normal(size=(8, 1000))
    assert split_rhat(mixed) == pytest.approx(1.0, abs=0.01)
    stuck = mixed.copy()
    stuck[0] += 3.0
    assert split_rhat(stuck) > 1.3


def test_rhat_sees_a_trend_inside_each_chain() -> None:
    drifting = np.random.default_rng(1).normal(size=(4, 1000)) + np.linspace(0, 3, 1000)
    assert split_rhat(drifting) > 1.2  # split halves disagree though every chain agrees with the others


def test_ess_is_the_draws_for_independent_ones_and_shrinks_as_ar1_theory_says() -> None:
    independent = np.random.default_rng(2).normal(size=(4, 2000))
    assert effective_sample_size(independent) == pytest.approx(8000, rel=0.1)
    rho = 0.9
    correlated = _ar1(rho, 8, 4000, seed=3)
    expected = 8 * 4000 * (1 - rho) / (1 + rho)
    assert effective_sample_size(correlated) == pytest.approx(expected, rel=0.25)
