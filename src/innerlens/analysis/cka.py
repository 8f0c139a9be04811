"""Centered kernel alignment (Kornblith et al. 2019) between two representations of the same objects.

Linear CKA is computed in feature space (``||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)`` on centred
columns), which is O(n·d²) instead of the O(n²) Gram form. Debiased CKA uses the unbiased HSIC
estimator (Song et al. 2012), so independent representations score near 0 whatever their
width. Intervals subsample objects *without* replacement (a bootstrap's duplicated rows make
identical Gram entries that inflate biased CKA) and rescale the subsample spread to the full
sample's (m-out-of-n); coverage is tested on data with a known population CKA.
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


HALF = 0.5  # subsample size m = n/2: the m-out-of-n deviations then need no rescaling (factor √(m/(n-m)) = 1)


@dataclass(frozen=True)
class CKAInterval:
    value: float
    low: float
    high: float
    draws: tuple[float, ...] = ()  # the statistic on each subsample, for paired comparisons on the same objects


def object_subsamples(n: int, repeats: int, seed: int, fraction: float = HALF) -> list[np.ndarray]:
    """``repeats`` subsets of m = fraction·n objects, without replacement (a bootstrap's duplicated rows
    make identical Gram entries that inflate biased CKA); share them to pair two statistics."""
    rng = np.random.default_rng(seed)
    size = max(4, int(round(fraction * n)))
    return [rng.choice(n, size=size, replace=False) for _ in range(repeats)]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def subsample_interval(full: float, draws: np.ndarray, n: int, m: int, confidence: float = 0.95,
                       bounded: bool = False) -> tuple[float, float]:
    """m-out-of-n interval: the subsample deviations from the full-sample value, rescaled by √(m/(n−m))
    to the spread of a statistic on all n objects (without it, 80 % subsamples give intervals about half
    as wide as they should be), added to the full-sample value. ``bounded``: a quantity in [0, 1],
    rescaled on the logit scale so the interval stays inside."""
    scale = np.sqrt(m / (n - m))
    transform, inverse = (_logit, lambda z: 1 / (1 + np.exp(-z))) if bounded else (np.asarray, np.asarray)
    centre = transform(np.array(full))
    deviations = scale * (transform(np.asarray(draws, dtype=np.float64)) - centre)
    tail = (1.0 - confidence) / 2.0
    low, high = centre + np.quantile(deviations, [tail, 1.0 - tail])
    return float(inverse(low)), float(inverse(high))


def cka_interval(
    x: np.ndarray,
    y: np.ndarray,
    cka: CKAFunction = linear_cka,
    *,
    repeats: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
    subsets: list[np.ndarray] | None = None,
) -> CKAInterval:
    """CKA on all objects with an m-out-of-n interval over half-samples of the objects (``subsets``:
    given, to pair this CKA with another on the same objects). Linear CKA's interval stays in [0, 1]."""
    subsets = subsets if subsets is not None else object_subsamples(len(x), repeats, seed)
    draws = np.array([cka(x[subset], y[subset]) for subset in subsets])
    full = cka(x, y)
    low, high = subsample_interval(full, draws, len(x), len(subsets[0]), confidence, bounded=cka is linear_cka)
    return CKAInterval(value=full, low=low, high=high, draws=tuple(float(d) for d in draws))
