"""Local learning coefficient (RLCT estimate) by SGLD, through devinterp 1.3.

The estimate λ̂ = nβ (E_w[L(w)] − L(w*)) depends on the step size ε, the localisation γ and
nβ, so :class:`LLCSettings` is logged with every run and must stay fixed across runs that are
compared. L(w*) is computed on the whole dataset, not on a few minibatches: minibatch noise
in L(w*) multiplied by nβ otherwise dominates the estimate.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from innerlens.models.transformer import release_transient_captures

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LLCSettings:
    epsilon: float = 1e-4
    gamma: float = 100.0
    nbeta: float | None = None  # None: n / log(n) for n training examples (Watanabe's β = 1/log n)
    num_chains: int = 4
    num_draws: int = 500
    num_burnin: int = 200
    batch_size: int = 256

    def resolved_nbeta(self, n: int) -> float:
        """nβ for a dataset of n examples; β = 1/log n is where the free energy's λ log n term is calibrated."""
        return self.nbeta if self.nbeta is not None else n / math.log(n)


@dataclass(frozen=True)
class LLCEstimate:
    mean: float
    std: float
    chain_means: list[float]
    loss_traces: list[list[float]]  # per chain, per draw: the sampled loss (inspect for stationarity)

    @property
    def healthy(self) -> bool:
        """False for negative or non-finite chains: the sampler left the basin or ε is too large."""
        return all(math.isfinite(c) and c >= 0 for c in self.chain_means)


class _EvalModeOnly(torch.nn.Module):
    """Keeps the wrapped model in eval mode: devinterp calls ``.train()``, LLC wants dropout off."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> "_EvalModeOnly":
        # devinterp calls this every step; the wrapped model was put in eval mode once, and
        # recursing through a TransformerLens bridge's many hook modules cost a third of a step.
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def __deepcopy__(self, memo: dict[int, Any]) -> "_EvalModeOnly":
        release_transient_captures(self.model)
        clone = _EvalModeOnly.__new__(_EvalModeOnly)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


def estimate_llc(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    settings: LLCSettings,
    seed: int,
) -> LLCEstimate:
    """Estimate the LLC of ``model`` at its current weights on (x, y) with ``loss_fn``.

    ``loss_fn(model, x, y)`` must be the mean per-example loss of the quantity whose
    geometry is measured (e.g. the task loss only, without auxiliary terms).
    """
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    wrapped = _EvalModeOnly(model).eval()
    with torch.no_grad():
        init_loss = float(loss_fn(wrapped, x, y))
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=min(settings.batch_size, len(x)),
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    nbeta = settings.resolved_nbeta(len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate_learning_coeff_with_summary(
            wrapped,
            loader,
            evaluate=lambda m, batch: (loss_fn(m, batch[0], batch[1]), {}),
            sampling_method=SGLD,
            optimizer_kwargs={"lr": settings.epsilon, "localization": settings.gamma, "nbeta": nbeta},
            num_chains=settings.num_chains,
            num_draws=settings.num_draws,
            num_burnin_steps=settings.num_burnin,
            init_loss=init_loss,
            seed=seed,
            device=next(model.parameters()).device,
            verbose=False,
        )
    release_transient_captures(model)
    chains = [float(result[f"llc-chain/{i}"]) for i in range(settings.num_chains)]
    traces = [[float(v) for v in chain] for chain in result["loss/trace"]]
    return LLCEstimate(mean=float(result["llc/mean"]), std=float(result["llc/std"]), chain_means=chains, loss_traces=traces)
