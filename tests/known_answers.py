"""The shared known-answer set-up of the LLC tests: a zero true function with Gaussian noise, its
negative log-likelihood, and sampler settings that resolve λ there (unit and in-process tiers)."""
from __future__ import annotations

import math

import torch

from innerlens.analysis.llc import LLCSettings

D, N, NOISE = 10, 4000, 0.5
SETTINGS = LLCSettings(epsilon=1e-4, gamma=1.0, nbeta=N / math.log(N), num_chains=4, num_draws=300, num_burnin=100, batch_size=500)


def zero_function_data() -> tuple[torch.Tensor, torch.Tensor]:
    """N inputs in D dimensions whose targets are pure noise (the true function is zero)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=generator)
    y = NOISE * torch.randn(N, 1, generator=generator)
    return x, y


def gaussian_nll(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean() / (2 * NOISE**2)
