"""A grokking sweep's phase table from the store, while or after it runs (finished runs only; the others counted).

  python bench/grokking_phases.py --parent <SWEEP_PARENT_RUN_ID> --results-prefix grokking_nanda_5seeds

Writes bench/results/<prefix>_runs.csv (one row per run: its phase boundaries, accuracy proxies and
status) and <prefix>_phases.csv (per boundary: runs that reached it, mean step with t 95 % interval
when all did, else the restricted mean and Kaplan-Meier median), and prints the table as the sweep does.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mlflow.tracking import MlflowClient

from innerlens import tracking
from innerlens.drivers.grokking_sweep import phase_summary, phase_text, sweep_results

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", required=True, help="the sweep's parent run id")
    parser.add_argument("--results-prefix", required=True)
    args = parser.parse_args()
    tracking.configure_tracking()
    params = MlflowClient().get_run(args.parent).data.params
    parameter, max_steps = params["sweep"], int(params["max_steps"])
    _, summary = sweep_results(args.parent, parameter)
    phases = phase_summary(summary, parameter, float(max_steps))
    summary.sort_values("seed").to_csv(RESULTS / f"{args.results_prefix}_runs.csv", index=False)
    phases.to_csv(RESULTS / f"{args.results_prefix}_phases.csv", index=False)
    print(summary.sort_values("seed").drop(columns=["run_id"]).to_string(index=False))
    print(phase_text(phases, int((summary["status"] == "FINISHED").sum()), max_steps))


if __name__ == "__main__":
    main()
