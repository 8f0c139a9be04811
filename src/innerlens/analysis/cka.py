"""Centered kernel alignment (Kornblith et al. 2019) between two representations of the same objects.

Linear CKA is computed in feature space (``||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)`` on centred
columns), which is O(n·d²) instead of the O(n²) Gram form. Debiased CKA uses the unbiased HSIC
estimator (Song et al. 2012), so independent representations score near 0 whatever their
width. Intervals subsample objects *without* replacement: a bootstrap's duplicated rows make
identical Gram entries that inflate biased CKA.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

CKAFunction = Callable[[np.ndarray, np.ndarray], float]


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    assert x.ndim == 2, "representations are (objects, features)"
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in [0, 1]; 1 when one representation is an orthogonal, scaled, shifted copy of the other."""
    assert len(x) == len(y), "CKA compares representations of the same objects"
    x, y = _centred(x), _centred(y)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else 0.0


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC of two Gram matrices (their diagonals are ignored)."""
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k_sums, l_sums = k.sum(axis=0), l.sum(axis=0)
    trace_term = float(np.sum(k * l))
    sum_term = k_sums.sum() * l_sums.sum() / ((n - 1) * (n - 2))
    cross_term = 2.0 * float(k_sums @ l_sums) / (n - 2)
    return (trace_term + sum_term - cross_term) / (n * (n - 3))


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from unbiased HSIC estimates; near 0 for independent data, may be slightly negative."""
    assert len(x) == len(y) and len(x) > 3, "debiased CKA needs the same objects, at least 4 of them"
    x, y = _centred(x), _centred(y)
    k, l = x @ x.T, y @ y.T
    denominator = np.sqrt(max(_unbiased_hsic(k, k), 0.0) * max(_unbiased_hsic(l, l), 0.0))
    return _unbiased_hsic(k, l) / denominator if denominator > 0 else 0.0


@dataclass(frozen=True)
class CKAInterval:
    value: float
    low: float
    high: float


def cka_interval(
    x: np.ndarray,
    y: np.ndarray,
    cka: CKAFunction = linear_cka,
    *,
    repeats: int = 100,
    fraction: float = 0.8,
    confidence: float = 0.95,
    seed: int = 0,
) -> CKAInterval:
    """CKA on all objects with a percentile interval over subsamples of objects (no duplicates)."""
    rng = np.random.default_rng(seed)
    size = max(4, int(round(fraction * len(x))))
    values = []
    for _ in range(repeats):
        subset = rng.choice(len(x), size=size, replace=False)
        values.append(cka(x[subset], y[subset]))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return CKAInterval(value=cka(x, y), low=float(low), high=float(high))
