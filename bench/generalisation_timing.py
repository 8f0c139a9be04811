"""How much of a study's spread between runs is when each run generalised, whatever its arm.

  python bench/generalisation_timing.py --results-prefix settled_transformer_seeds10 \
      --cells "baseline,middle_layer w=0.003,input_control w=0.003"

Across the runs of the named cells that generalised: Spearman's ρ of every primary metric against the
epoch validation accuracy first reached 0.95, and per cell each metric's median among early and late
runs (innerlens.drivers.generalisation_timing says why this is a control). Reads
bench/results/<prefix>_run_summaries.csv; writes bench/results/<prefix>_timing.json and
<prefix>_timing.png (each run's measures against its epoch of generalisation, by arm).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from innerlens.drivers.generalisation_timing import CENSORED, EPOCH, generalisation_timing, runs_by_cell
from innerlens.drivers.self_modeling_comparison import SETTLED
from innerlens.viz.compare import png
from innerlens.viz.self_modeling import timing_scatter

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-prefix", required=True)
    parser.add_argument("--cells", required=True, help="comma-separated groups pooled, e.g. 'baseline,middle_layer w=0.003'")
    args = parser.parse_args()
    summaries = pd.read_csv(RESULTS / f"{args.results_prefix}_run_summaries.csv")
    cells = args.cells.split(",")
    unknown = sorted(set(cells) - set(summaries["group"]))
    if unknown:
        parser.error(f"not cells of {args.results_prefix}: {', '.join(unknown)}; cells: {', '.join(sorted(set(summaries['group'])))}")
    result = generalisation_timing(summaries, cells)
    (RESULTS / f"{args.results_prefix}_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    runs = runs_by_cell(summaries, cells)
    figure = timing_scatter(runs[runs[CENSORED] == 0], EPOCH, list(result["metrics"]), SETTLED)
    (RESULTS / f"{args.results_prefix}_timing.png").write_bytes(png(figure))
    print(f"{result['generalised']} of {result['runs']} runs generalised (median epoch {result['median_epoch']:g})")
    for key, row in result["metrics"].items():
        print(f"{key:22s} Spearman rho vs epoch of generalisation {row['spearman_rho']:+.2f} (p {row['p']:.2g})")


if __name__ == "__main__":
    main()
