"""What an LLC estimate is asked (:class:`LLCSettings`) and what it returns (:class:`LLCEstimate`).

Plain data, importable without torch: configs carry the settings, and the CLI renders configs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LLCSettings:
    epsilon: float = 1e-4
    gamma: float = 100.0
    nbeta: float | None = None  # None: n / log(n) for n training examples (Watanabe's β = 1/log n)
    num_chains: int = 4
    num_draws: int = 500
    num_burnin: int = 200
    batch_size: int = 256
    sampler: str = "devinterp"  # or "vectorised": all chains as one batched model (bench/llc_cost.py: slower on CPU)
    # Fraction of each chain's draws left out of the average after the burn-in: the paper's code
    # averages the second half of devinterp's online trace, a burn-in by another name.
    trace_discard: float = 0.0

    def resolved_nbeta(self, n: int) -> float:
        """nβ for a dataset of n examples; β = 1/log n is where the free energy's λ log n term is calibrated."""
        return self.nbeta if self.nbeta is not None else n / math.log(n)


PAPER_BATCH = 512  # the paper's training and SGLD minibatch


# Premakumar et al.'s RLCT (official code, MNIST/run_rlct_calculation.py, devinterp 0.2): nβ from
# devinterp's optimal_temperature (batch / ln batch, about 82), ε 1e-4, γ 100, 4 chains x 1,000 draws,
# no burn-in steps, the mean of the second half of the trace.
PAPER_LLC = LLCSettings(epsilon=1e-4, gamma=100.0, nbeta=PAPER_BATCH / math.log(PAPER_BATCH), num_chains=4,
                        num_draws=1000, num_burnin=0, batch_size=PAPER_BATCH, trace_discard=0.5)


@dataclass(frozen=True)
class LLCEstimate:
    mean: float
    std: float
    chain_means: list[float]
    loss_traces: list[list[float]]  # per chain, per draw: the sampled loss (inspect for stationarity)
    mala_acceptance: float | None = None  # mean MALA acceptance probability (only when diagnosed)

    @property
    def healthy(self) -> bool:
        """False for negative or non-finite chains: the sampler left the basin or ε is too large."""
        return all(math.isfinite(c) and c >= 0 for c in self.chain_means)
