"""The paper-experiment table for the README, from a study's committed paired statistics.

  python bench/paper_table.py --results-prefix paper_fmnist_h128

Reads bench/results/<prefix>_paired_statistics.csv (written by bench/self_modeling_study.py) and writes
bench/results/<prefix>_table.md: per cell (a self-model weight AW, or a placement, against AW 0 on the
same seed) and metric, the change as % of the AW 0 mean (accuracy in points) with its t 95 % CI, the exact sign-flip
permutation p and the paired t p (both Holm over every primary contrast), the TOST p against the
declared margin, and the settled runs per side; for a study matched by gradient share, each cell's
realised auxiliary weight and share.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from innerlens.drivers.self_modeling_comparison import shown

RESULTS = Path(__file__).parent / "results"
NAMES = {"llc/final_mean_paper": "paper RLCT", "llc/final_mean": "calibrated LLC", "weights/std_final": "weight SD (classifier)",
         "weights/std_all_final": "weight SD (all weights)", "test/acc_at_best": "test acc (points)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-prefix", required=True)
    args = parser.parse_args()
    table = pd.read_csv(RESULTS / f"{args.results_prefix}_paired_statistics.csv")
    table = table[table["key"].isin(NAMES)]
    lines = ["| cell | metric | AW 0 mean | change [t 95 % CI] | perm p (Holm) | t p (Holm) | TOST p | settled |", "|---|---|---|---|---|---|---|---|"]
    table = table.assign(weight=table["group"].str.extract(r"w=([\d.e-]+)")[0].astype(float))
    for row in table.sort_values(["weight", "group", "key"], kind="stable").itertuples():
        lines.append(f"| {row.group} | {NAMES[row.key]} | {row.mean_reference:.4g} | {shown(row)[0]} | "
                     f"{row.permutation_p:.3g} ({row.permutation_p_holm:.3g}) | {row.paired_t_p:.3g} ({row.paired_t_p_holm:.3g}) | "
                     f"{row.tost_p:.3g} | {row.settled_group} v {row.settled_reference} |")
    lines += matched_strength(RESULTS / f"{args.results_prefix}_run_summaries.csv")
    out = RESULTS / f"{args.results_prefix}_table.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def matched_strength(path: Path) -> list[str]:
    """For a study matched by gradient share: per cell, the auxiliary weight and the share the last
    epoch began at (before re-matching), mean [min, max] over seeds; nothing for fixed-weight studies."""
    summaries = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["group", "key", "value"])
    matched = summaries[summaries["key"].isin(["aux/weight", "aux/grad_share_before"])]
    if matched.empty:
        return []
    lines = ["", "| cell | aux weight at the end | gradient share before the last re-match | runs |", "|---|---|---|---|"]
    for group, rows in matched.groupby("group"):
        cells = [f"{v.mean():.3g} [{v.min():.3g}, {v.max():.3g}]"
                 for v in (rows.loc[rows["key"] == key, "value"] for key in ("aux/weight", "aux/grad_share_before"))]
        lines.append(f"| {group} | {cells[0]} | {cells[1]} | {(rows['key'] == 'aux/weight').sum()} |")
    return lines


if __name__ == "__main__":
    main()
