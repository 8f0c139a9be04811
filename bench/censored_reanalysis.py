"""The grokking regime's "generalises earlier", retested as censored time-to-event data.

Reads a study's committed run summaries (by default the grokking-regime study: 10 paired seeds,
300 epochs) and, for each cell against the reference cell on the same seed: the Kaplan-Meier
restricted mean epoch to val acc ≥ 0.95 up to the budget (labelled restricted), the paired order
test (an exact sign test over the pairs whose order censoring allows), and the shift over the pairs
where both generalised. Writes bench/results/censored_reanalysis.json (other studies and references:
``<prefix>_censored_vs_<reference>.json``).

  python bench/censored_reanalysis.py
  python bench/censored_reanalysis.py --results-prefix grokking_matched_share --reference "input_control w=1"
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from innerlens.analysis.censored import paired_order, restricted_mean
from innerlens.drivers.self_modeling_comparison import group_slug

RESULTS = Path(__file__).parent / "results"
DEFAULT_PREFIX = "self_modeling_grokking_regime"
BUDGET = 300


def output_path(prefix: str, reference: str) -> Path:
    """The first study's baseline analysis keeps its committed name; anything else is named by both."""
    if prefix == DEFAULT_PREFIX and reference == "baseline":
        return RESULTS / "censored_reanalysis.json"
    return RESULTS / f"{prefix}_censored_vs_{group_slug(reference)}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-prefix", default=DEFAULT_PREFIX, help="the study's bench/results prefix")
    parser.add_argument("--reference", default="baseline", help="the cell every other cell is paired against")
    parser.add_argument("--budget", type=int, default=BUDGET, help="epochs run: a run that never generalised is censored here")
    args = parser.parse_args()
    source = RESULTS / f"{args.results_prefix}_run_summaries.csv"
    if not source.exists():
        parser.error(f"no run summaries at {source}")
    table = pd.read_csv(source)
    wide = table[table["key"].isin(["val/epoch_to_acc_0.95", "val/censored"])].pivot_table(
        index=["group", "seed"], columns="key", values="value").reset_index()
    if args.reference not in set(wide["group"]):
        parser.error(f"--reference {args.reference!r}: the study has {', '.join(sorted(set(wide['group'])))}")
    wide["observed"] = wide["val/censored"] == 0
    wide["time"] = np.where(wide["observed"], wide["val/epoch_to_acc_0.95"], args.budget)  # censored at the budget
    reference = wide[wide["group"] == args.reference].set_index("seed")
    out = {"source": source.name, "reference": args.reference, "budget_epochs": args.budget, "cells": {}}
    for group, cell in wide[wide["group"] != args.reference].groupby("group"):
        cell = cell.set_index("seed").loc[reference.index.intersection(cell["seed"])]
        base = reference.loc[cell.index]
        order = paired_order(cell["time"].to_numpy(), cell["observed"].to_numpy(), base["time"].to_numpy(), base["observed"].to_numpy())
        both = cell["observed"] & base["observed"]
        shift = (cell["time"] - base["time"])[both]
        out["cells"][group] = {
            "n_pairs": int(len(cell)),
            "generalised": f"{int(cell['observed'].sum())}/{len(cell)} v {args.reference} {int(base['observed'].sum())}/{len(base)}",
            "restricted_mean_epoch": restricted_mean(cell["time"], cell["observed"], args.budget),
            "restricted_mean_epoch_reference": restricted_mean(base["time"], base["observed"], args.budget),
            "paired_order": {"earlier": order.earlier, "later": order.later, "tied": order.tied, "unknown": order.unknown,
                             "sign_test_p": order.p_value},
            "both_generalised": {"n": int(both.sum()), "median_shift_epochs": float(shift.median()) if len(shift) else None}}
    output_path(args.results_prefix, args.reference).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
