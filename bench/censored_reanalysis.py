"""The grokking regime's "generalises earlier", retested as censored time-to-event data.

Reads the committed run summaries of the grokking-regime study (10 paired seeds, 300 epochs) and,
for each self-modeled cell against the baseline on the same seed: the Kaplan-Meier restricted mean
epoch to val acc ≥ 0.95 up to the budget (labelled restricted), the paired order test (an exact
sign test over the pairs whose order censoring allows), and the shift over the pairs where both
generalised. Writes bench/results/censored_reanalysis.json.

  python bench/censored_reanalysis.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from innerlens.analysis.censored import paired_order, restricted_mean

RESULTS = Path(__file__).parent / "results"
SOURCE = RESULTS / "self_modeling_grokking_regime_run_summaries.csv"
BUDGET = 300


def main() -> None:
    table = pd.read_csv(SOURCE)
    wide = table[table["key"].isin(["val/epoch_to_acc_0.95", "val/censored"])].pivot_table(
        index=["group", "seed"], columns="key", values="value").reset_index()
    wide["observed"] = wide["val/censored"] == 0
    wide["time"] = np.where(wide["observed"], wide["val/epoch_to_acc_0.95"], BUDGET)  # censored at the budget
    baseline = wide[wide["group"] == "baseline"].set_index("seed")
    out = {"source": SOURCE.name, "budget_epochs": BUDGET, "cells": {}}
    for group, cell in wide[wide["group"] != "baseline"].groupby("group"):
        cell = cell.set_index("seed").loc[baseline.index.intersection(cell["seed"])]
        base = baseline.loc[cell.index]
        order = paired_order(cell["time"].to_numpy(), cell["observed"].to_numpy(), base["time"].to_numpy(), base["observed"].to_numpy())
        both = cell["observed"] & base["observed"]
        shift = (cell["time"] - base["time"])[both]
        out["cells"][group] = {
            "n_pairs": int(len(cell)), "generalised": f"{int(cell['observed'].sum())}/{len(cell)} v baseline {int(base['observed'].sum())}/{len(base)}",
            "restricted_mean_epoch": restricted_mean(cell["time"], cell["observed"], BUDGET),
            "restricted_mean_epoch_baseline": restricted_mean(base["time"], base["observed"], BUDGET),
            "paired_order": {"earlier": order.earlier, "later": order.later, "tied": order.tied, "unknown": order.unknown,
                             "sign_test_p": order.p_value},
            "both_generalised": {"n": int(both.sum()), "median_shift_epochs": float(shift.median()) if len(shift) else None}}
    (RESULTS / "censored_reanalysis.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
