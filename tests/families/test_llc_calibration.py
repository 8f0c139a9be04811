"""The LLC estimator calibrated against known learning coefficients (regular d/2, a singular model's d/4, a degenerate one): samplers run to an answer, so they sit in the in-process tier, not the fast one."""
from __future__ import annotations

import torch
from known_answers import SETTINGS, D, gaussian_nll, zero_function_data

from innerlens.analysis.known_llc import LinearRegression as Linear
from innerlens.analysis.known_llc import SquaredWeights
from innerlens.analysis.llc import estimate_llc


class Factored(torch.nn.Module):
    """Degenerate, same size: y = Σ a_i b_i x_i over d/2 pairs, at a = b = 0 (λ = d/4 < d/2)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(D // 2))
        self.b = torch.nn.Parameter(torch.zeros(D // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, : D // 2] * self.a * self.b).sum(-1, keepdim=True)


def test_linear_regression_has_llc_d_over_2() -> None:
    x, y = zero_function_data()
    w_hat = torch.linalg.lstsq(x, y).solution.squeeze(1)  # sample at the empirical minimum
    estimate = estimate_llc(Linear(w_hat), x, y, gaussian_nll, SETTINGS, seed=0)
    assert abs(estimate.mean - D / 2) <= 0.15 * D / 2, estimate
    assert estimate.healthy


def test_degenerate_model_ranks_below_regular_one_of_the_same_size() -> None:
    x, y = zero_function_data()
    regular = estimate_llc(Linear(torch.zeros(D)), x, y, gaussian_nll, SETTINGS, seed=1)
    degenerate = estimate_llc(Factored(), x, y, gaussian_nll, SETTINGS, seed=1)
    assert sum(p.numel() for p in Factored().parameters()) == D
    assert degenerate.mean < 0.75 * regular.mean, (degenerate, regular)


def test_singular_model_with_known_coefficient_d_over_4_is_recovered_beside_the_regular_d_over_2() -> None:
    x, y = zero_function_data()
    singular = [estimate_llc(SquaredWeights(D), x, y, gaussian_nll, SETTINGS, seed=seed).mean for seed in (0, 1)]
    regular = estimate_llc(Linear(torch.linalg.lstsq(x, y).solution.squeeze(1)), x, y, gaussian_nll, SETTINGS, seed=0).mean
    assert abs(sum(singular) / 2 - D / 4) <= 0.15 * D / 4, singular
    assert abs(regular - D / 2) <= 0.15 * D / 2, regular
