"""Models whose learning coefficient is known: the LLC estimator's calibration targets."""
from __future__ import annotations

from typing import Callable

import torch

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class LinearRegression(torch.nn.Module):
    """Regular: y = w·x with d parameters, so λ = d/2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).sum(-1, keepdim=True)


class SquaredWeights(torch.nn.Module):
    """Singular: y = Σ w_i² x_i at the true w = 0. The population loss grows as Σ w_i⁴, so each
    coordinate contributes 1/4 (the RLCT of w^(2k) is 1/(2k)) with multiplicity 1: λ = d/4, half the
    regular d/2 of a model with the same parameter count. Multiplicity 1 keeps the finite-n estimate
    free of the slow log log n term that degenerate products (a·b, λ = 1/2, m = 2) carry."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w**2).sum(-1, keepdim=True)


def gaussian_nll_regression(
    n: int, d: int = 10, noise: float = 0.5, seed: int = 0
) -> tuple[LinearRegression, torch.Tensor, torch.Tensor, LossFn, float]:
    """(model at the least-squares minimum, x, y, per-example Gaussian NLL, λ = d/2) for n examples."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    y = noise * torch.randn(n, 1, generator=generator)  # true function: zero

    def loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((model(inputs) - targets) ** 2).mean() / (2 * noise**2)

    w_hat = torch.linalg.lstsq(x, y).solution.squeeze(1)
    return LinearRegression(w_hat), x, y, loss, d / 2
