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
