"""Convergence diagnostics of sampler chains (Gelman-Rubin split R-hat, effective sample size).

Applied to the LLC's per-draw loss traces: chains that disagree (R-hat above ~1.05) or a handful
of effective draws mean the estimate is the sampler's transient, not the posterior's.
"""
from __future__ import annotations

import numpy as np


def split_rhat(traces: np.ndarray) -> float:
    """Split R-hat of ``traces`` (chains, draws): each chain halved, then Gelman-Rubin's ratio."""
    chains = np.asarray(traces, float)
    half = chains.shape[1] // 2
    split = np.concatenate([chains[:, :half], chains[:, half : 2 * half]])
    n = split.shape[1]
    within = split.var(axis=1, ddof=1).mean()
    between = n * split.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan")
    return float(np.sqrt(((n - 1) / n * within + between / n) / within))


def effective_sample_size(traces: np.ndarray) -> float:
    """ESS over all chains: draws / (1 + 2 Σ ρ_t), the autocorrelations summed in pairs until a
    pair turns negative (Geyer's initial positive sequence)."""
    chains = np.asarray(traces, float)
    m, n = chains.shape
    centred = chains - chains.mean(axis=1, keepdims=True)
    variance = (centred**2).mean()
    if variance == 0:
        return float("nan")
    rho = [np.mean([np.dot(c[: n - t], c[t:]) / n for c in centred]) / variance for t in range(n)]
    total = 0.0
    for t in range(1, n - 1, 2):
        pair = rho[t] + rho[t + 1]
        if pair < 0:
            break
        total += pair
    return float(m * n / (1 + 2 * total))
