"""The rounding control as a standing check: which of a study's contrasts survive its rerun on another float path.

  python bench/rounding_check.py --first paper_fmnist_h128_settled_with_control \
      --second paper_fmnist_h128_settled_relabelled --reference "input_control w=10"

Reads bench/results/<first>_run_summaries.csv and <second>_run_summaries.csv (bench/self_modeling_study.py:
the same seeds, the second on another float path, e.g. --relabel-inputs or --stack-seeds) and writes
bench/results/<second>_rounding_check_vs_<reference>.csv: per primary contrast against --reference (default: the
baseline) the verdict on each path, whether they agree, how many of its runs came out bit-identical
(an arm not perturbed at all proves nothing by agreeing), and whether it is a finding.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from innerlens.drivers.rounding_check import identical_runs, rounding_check
from innerlens.drivers.self_modeling_comparison import BASELINE, group_slug

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", required=True, help="results prefix of the study")
    parser.add_argument("--second", required=True, help="results prefix of its rerun on another float path")
    parser.add_argument("--reference", default=BASELINE, help="the group every cell is compared against")
    parser.add_argument("--groups", help="comma-separated groups to keep (default: those both studies have)")
    args = parser.parse_args()
    first, second = (pd.read_csv(RESULTS / f"{prefix}_run_summaries.csv") for prefix in (args.first, args.second))
    shared = set(first["group"]) & set(second["group"])
    keep = set(args.groups.split(",")) if args.groups else shared
    if args.reference not in keep or not keep <= shared:
        parser.error(f"groups {sorted(keep)} must include --reference and be in both studies; shared: {', '.join(sorted(shared))}")
    first, second = (s[s["group"].isin(keep)] for s in (first, second))
    print(identical_runs(first, second).to_string(index=False))
    table = rounding_check(first, second, reference=args.reference)
    table.to_csv(RESULTS / f"{args.second}_rounding_check_vs_{group_slug(args.reference)}.csv", index=False)
    with pd.option_context("display.width", 200):
        print(table[["key", "group", "reference", "n_pairs_first", "verdict_first", "verdict_second", "identical_runs",
                     "agree", "perturbed", "finding"]].to_string(index=False))


if __name__ == "__main__":
    main()
