"""Paired statistics for designs where runs share seeds (same data, split, init and batch order).

Every contrast is a group against the reference on the units (seeds) both have:
the mean paired difference with a percentile-bootstrap 95 % CI, the Wilcoxon signed-rank and
paired t p-values, the paired effect size d_z, and Holm's correction over the contrasts of each
metric. Pure functions: no MLflow, no figures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

PAIRED_COLUMNS = [
    "key", "group", "reference", "n_pairs", "mean", "mean_reference", "mean_difference", "ci_low", "ci_high",
    "wilcoxon_p", "paired_t_p", "effect_size_dz", "wilcoxon_p_holm", "paired_t_p_holm",
]


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


def paired_contrast(values: np.ndarray, reference: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Statistics of ``values - reference`` over aligned pairs."""
    differences = np.asarray(values, float) - np.asarray(reference, float)
    row = {"n_pairs": len(differences), "mean": float(np.mean(values)), "mean_reference": float(np.mean(reference)),
           "mean_difference": float(differences.mean()), "ci_low": np.nan, "ci_high": np.nan,
           "wilcoxon_p": np.nan, "paired_t_p": np.nan, "effect_size_dz": np.nan}
    if len(differences) < 2:
        return row
    row["ci_low"], row["ci_high"] = bootstrap_ci(differences, seed=seed)
    if np.any(differences != 0):
        row["wilcoxon_p"] = float(stats.wilcoxon(values, reference).pvalue)
        spread = differences.std(ddof=1)
        if spread > 0:
            row["paired_t_p"] = float(stats.ttest_rel(values, reference).pvalue)
            row["effect_size_dz"] = float(differences.mean() / spread)
    else:
        row["wilcoxon_p"] = row["paired_t_p"] = 1.0
    return row


def paired_statistics(table: pd.DataFrame, reference: str, *, unit: str = "seed", seed: int = 0) -> pd.DataFrame:
    """Every group against ``reference`` per key, paired on ``unit``; Holm over each key's contrasts.

    ``table`` has one row per (group, unit, key) with a ``value``: one number per run, such as
    the final LLC or test accuracy at the best validation checkpoint. Units missing from either
    side of a contrast are left out of it (``n_pairs`` says how many remain).
    """
    rows = []
    for key, by_key in table.groupby("key", sort=False):
        wide = by_key.pivot_table(index=unit, columns="group", values="value", aggfunc="first")
        if reference not in wide:
            continue
        for group in [g for g in wide.columns if g != reference]:
            pairs = wide[[group, reference]].dropna()
            contrast = paired_contrast(pairs[group].to_numpy(), pairs[reference].to_numpy(), seed=seed)
            rows.append({"key": key, "group": group, "reference": reference, **contrast})
    result = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    for column in ("wilcoxon_p", "paired_t_p"):
        for key, index in result.groupby("key").groups.items():
            result.loc[index, f"{column}_holm"] = holm(result.loc[index, column].to_numpy())
    return result
