"""Cells of a study against another cell on the same seeds, e.g. self-modeling against its non-self control.

  python bench/cell_contrast.py --results-prefix paper_fmnist_h128_settled_with_control \
      --cell "last_layer w=10" --reference "input_control w=10"

``--cell`` takes several cells, comma-separated (every placement against the control): Holm then runs
over all of their primary contrasts together. ``--settled-only`` keeps only runs that had settled, so a
pair counts only where both sides settled (<prefix>_contrast_settled_only_vs_<reference>.csv): a
sensitivity check beside the full contrast, not a replacement, since settling can itself be an effect
of the arm.

Reads bench/results/<prefix>_run_summaries.csv (written by bench/self_modeling_study.py) and writes
bench/results/<prefix>_contrast.csv: per primary metric, the paired difference as % of the reference
mean (accuracy in points) with a t 95 % interval, the exact sign-flip permutation p (Holm over the
primary metrics) and TOST against the study's declared margins: the study's own statistics, with the
control in the baseline's place.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from innerlens.drivers.self_modeling_comparison import SETTLED, group_slug, shown, study_statistics

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-prefix", required=True)
    parser.add_argument("--cell", required=True, help="the group(s) compared, comma-separated, e.g. 'last_layer w=10'")
    parser.add_argument("--reference", required=True, help="the group it is compared against on the same seeds")
    parser.add_argument("--settled-only", action="store_true", help="drop the runs that had not settled before pairing")
    args = parser.parse_args()
    summaries = pd.read_csv(RESULTS / f"{args.results_prefix}_run_summaries.csv")
    out = RESULTS / f"{args.results_prefix}_contrast.csv"
    if args.settled_only:
        settled = summaries[(summaries["key"] == SETTLED) & (summaries["value"] == 1)][["group", "seed"]]
        summaries = summaries.merge(settled, on=["group", "seed"])
        out = RESULTS / f"{args.results_prefix}_contrast_settled_only_vs_{group_slug(args.reference)}.csv"
    groups = set(summaries["group"])
    cells = args.cell.split(",")
    for group in (*cells, args.reference):
        if group not in groups:
            parser.error(f"{group!r} is not a cell of {args.results_prefix}; cells: {', '.join(sorted(groups))}")
    statistics = study_statistics(summaries[summaries["group"].isin([*cells, args.reference])], reference=args.reference)
    statistics.to_csv(out, index=False)
    for row in statistics[statistics["primary"]].itertuples():
        change, tost = shown(row)
        print(f"{row.key:22s} {row.group} v {args.reference}: {change}  n {row.n_pairs}  "
              f"perm p {row.permutation_p:.3g} (Holm {row.permutation_p_holm:.3g})  TOST {tost} p {row.tost_p:.3g}")


if __name__ == "__main__":
    main()
