"""The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018) from two batch sizes.

One pair of squared gradient norms (batch b and B) gives unbiased estimates of |G|² and tr(Σ), but
their ratio from one draw is very noisy (10-90 % spread 106-394 around a true 188 here). As in the
paper, each moment is averaged over draws first and the ratio taken last.
"""
from __future__ import annotations

import math

import numpy as np


def noise_scale(small: list[float], big: list[float], b: int, big_b: int) -> dict[str, float]:
    """B_simple from per-draw squared gradient norms at batch ``b`` (``small``) and ``big_b`` (``big``),
    with the standard errors of the two averaged moments (the spread over draws)."""
    small_array, big_array = np.asarray(small, float), np.asarray(big, float)
    grad_sq = (big_b * big_array - b * small_array) / (big_b - b)  # unbiased per draw
    trace = (small_array - big_array) / (1 / b - 1 / big_b)
    mean_grad_sq, mean_trace = float(grad_sq.mean()), float(trace.mean())
    draws = len(grad_sq)
    spread = (lambda values: float(values.std(ddof=1) / math.sqrt(draws))) if draws > 1 else (lambda values: math.nan)
    return {
        "gns/grad_sq": mean_grad_sq,
        "gns/trace": mean_trace,
        "gns/b_simple": mean_trace / mean_grad_sq if mean_grad_sq > 0 else math.nan,
        "gns/grad_sq_se": spread(grad_sq),
        "gns/trace_se": spread(trace),
    }
