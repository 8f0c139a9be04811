"""How much of a study's spread between runs is when each run generalised, whatever its arm.

A paired contrast removes what two arms share on a seed, not what differs between them on it: if a
complexity measure tracks the epoch at which a run generalised, an arm that shifts that epoch moves
the measure without the network being simpler at a given stage, and seeds that generalise late
widen every interval. This is the control for that reading.
"""
from __future__ import annotations

import pandas as pd
from scipy.stats import spearmanr

from innerlens.drivers.self_modeling_comparison import PRIMARY_METRICS

EPOCH = "val/epoch_to_acc_0.95"
CENSORED = "val/censored"


def runs_by_cell(summaries: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """One row per run of ``cells`` (index ``group, seed``), one column per summary key."""
    return summaries[summaries["group"].isin(cells)].pivot_table(index=["group", "seed"], columns="key", values="value")


def generalisation_timing(summaries: pd.DataFrame, cells: list[str]) -> dict:
    """Over the runs of ``cells`` that generalised (run summaries: ``group, seed, key, value``):
    Spearman's ρ and its p of each primary metric against the epoch validation accuracy first
    reached 0.95, and per cell the metric's median among runs that generalised early and late
    (split at the median epoch of all of them)."""
    wide = runs_by_cell(summaries, cells)
    generalised = wide[wide[CENSORED] == 0]
    split = float(generalised[EPOCH].median())
    early, late = generalised[generalised[EPOCH] <= split], generalised[generalised[EPOCH] > split]
    result: dict = {"cells": cells, "runs": len(wide), "generalised": len(generalised), "median_epoch": split, "metrics": {}}
    for key in (key for key in PRIMARY_METRICS if key in generalised):
        rho = spearmanr(generalised[EPOCH], generalised[key])
        result["metrics"][key] = {"spearman_rho": float(rho.statistic), "p": float(rho.pvalue),
                                  "median_early": early.groupby(level="group")[key].median().to_dict(),
                                  "median_late": late.groupby(level="group")[key].median().to_dict()}
    return result
