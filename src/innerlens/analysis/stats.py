"""Paired statistics for designs where runs share seeds (same data, split, init and batch order).

Every contrast is a group against the reference on the units (seeds) both have: the mean paired
difference with a t interval (right at n = 5-10, where the percentile bootstrap under-covers:
89 % at n = 10, 83 % at n = 5 in simulation; kept beside it), the exact sign-flip permutation
p-value, the Wilcoxon signed-rank and paired t p-values, the paired effect size d_z, TOST
equivalence against a declared margin (so a null reads "no effect larger than X"), and Holm's
correction over a declared family of contrasts. Pure functions: no MLflow, no figures.
"""
from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

PAIRED_COLUMNS = [
    "key", "group", "reference", "n_pairs", "mean", "mean_reference", "mean_difference", "t_ci_low", "t_ci_high",
    "ci_low", "ci_high", "permutation_p", "wilcoxon_p", "paired_t_p", "effect_size_dz", "margin", "tost_p",
    "permutation_p_holm", "wilcoxon_p_holm", "paired_t_p_holm",
]
EXACT_SIGN_FLIPS = 16  # up to 2^16 sign patterns enumerated; beyond, a seeded Monte Carlo of 2^16
Margin = tuple[Literal["relative", "absolute"], float]  # "relative": a fraction of the reference mean


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error), in the input order; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested])]):
        running = max(running, (len(tested) - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def bootstrap_ci(differences: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``differences`` (resampling the pairs)."""
    generator = np.random.default_rng(seed)
    means = generator.choice(differences, size=(n_boot, len(differences)), replace=True).mean(1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def t_interval(differences: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (the paired t test's own interval)."""
    d = np.asarray(differences, float)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def bounded_interval(values: np.ndarray, level: float = 0.95, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """A t-interval for a quantity bounded in [low, high] (AUC, accuracy, ECE), taken on the logit scale
    and mapped back, so it stays inside the bounds (a plain t-interval of five AUCs can pass 1)."""
    scaled = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 1e-6, 1 - 1e-6)
    logits = np.log(scaled / (1 - scaled))
    lo, hi = t_interval(logits, level)
    back = lambda z: low + (high - low) / (1 + np.exp(-z))  # noqa: E731
    return float(back(lo)), float(back(hi))


def sign_flip_p(differences: np.ndarray, *, seed: int = 0) -> float:
    """Two-sided permutation p-value of the mean paired difference: under H0 each difference's sign
    is a fair coin. Exact (every sign pattern) up to :data:`EXACT_SIGN_FLIPS` pairs."""
    d = np.asarray(differences, float)
    n = len(d)
    if n <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(2**EXACT_SIGN_FLIPS, n))
    observed = abs(d.mean())
    flipped = np.abs(signs @ d) / n
    return float(np.mean(flipped >= observed - 1e-12 * max(1.0, observed)))


def tost_p(differences: np.ndarray, margin: float) -> float:
    """Paired TOST: p of H0 "|mean difference| ≥ margin" (two one-sided t tests, the larger p).
    Below 0.05, the effect is smaller than ``margin`` in both directions (equivalence)."""
    d = np.asarray(differences, float)
    n, spread = len(d), d.std(ddof=1)
    if spread == 0:
        return 0.0 if abs(d.mean()) < margin else 1.0
    se = spread / np.sqrt(n)
    lower = stats.t.sf((d.mean() + margin) / se, n - 1)  # H0: mean <= -margin
    upper = stats.t.cdf((d.mean() - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(lower, upper))


def resolve_margin(margin: Margin | None, reference_mean: float) -> float:
    if margin is None:
        return np.nan
    kind, value = margin
    return abs(reference_mean) * value if kind == "relative" else value


def paired_contrast(values: np.ndarray, reference: np.ndarray, *, seed: int = 0, margin: Margin | None = None) -> dict[str, float]:
    """Statistics of ``values - reference`` over aligned pairs (TOST against ``margin`` if declared)."""
    differences = np.asarray(values, float) - np.asarray(reference, float)
    row = {"n_pairs": len(differences), "mean": float(np.mean(values)), "mean_reference": float(np.mean(reference)),
           "mean_difference": float(differences.mean()), "t_ci_low": np.nan, "t_ci_high": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "permutation_p": np.nan, "wilcoxon_p": np.nan, "paired_t_p": np.nan,
           "effect_size_dz": np.nan, "margin": resolve_margin(margin, float(np.mean(reference))), "tost_p": np.nan}
    if len(differences) < 2:
        return row
    row["ci_low"], row["ci_high"] = bootstrap_ci(differences, seed=seed)
    row["t_ci_low"], row["t_ci_high"] = t_interval(differences)
    row["permutation_p"] = sign_flip_p(differences, seed=seed)
    if np.isfinite(row["margin"]):
        row["tost_p"] = tost_p(differences, row["margin"])
    if np.any(differences != 0):
        row["wilcoxon_p"] = float(stats.wilcoxon(values, reference).pvalue)
        spread = differences.std(ddof=1)
        if spread > 0:
            row["paired_t_p"] = float(stats.ttest_rel(values, reference).pvalue)
            row["effect_size_dz"] = float(differences.mean() / spread)
    else:
        row["wilcoxon_p"] = row["paired_t_p"] = 1.0
    return row


def paired_statistics(table: pd.DataFrame, reference: str, *, unit: str = "seed", seed: int = 0,
                      margins: dict[str, Margin] | None = None, holm_family: Literal["key", "all"] = "key") -> pd.DataFrame:
    """Every group against ``reference`` per key, paired on ``unit``; Holm over each key's contrasts
    (``holm_family="key"``) or over every contrast in the table (``"all"``, the declared family of a
    study's primary metrics). ``margins`` declares each key's smallest effect of interest for TOST.

    ``table`` has one row per (group, unit, key) with a ``value``: one number per run, such as
    the final LLC or test accuracy at the best validation checkpoint. Units missing from either
    side of a contrast are left out of it (``n_pairs`` says how many remain); a group sharing no unit with
    the reference has no row.
    """
    rows = []
    for key, by_key in table.groupby("key", sort=False):
        wide = by_key.pivot_table(index=unit, columns="group", values="value", aggfunc="first")
        if reference not in wide:
            continue
        for group in [g for g in wide.columns if g != reference]:
            pairs = wide[[group, reference]].dropna()
            if pairs.empty:  # no unit ran both: there is no contrast to state
                continue
            contrast = paired_contrast(pairs[group].to_numpy(), pairs[reference].to_numpy(), seed=seed,
                                       margin=(margins or {}).get(key))
            rows.append({"key": key, "group": group, "reference": reference, **contrast})
    result = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    for column in ("permutation_p", "wilcoxon_p", "paired_t_p"):
        families = result.groupby("key").groups.values() if holm_family == "key" else [result.index]
        for index in families:
            result.loc[index, f"{column}_holm"] = holm(result.loc[index, column].to_numpy())
    return result
