"""A study's runs, epoch by epoch, as a CSV: the record of a pilot or a stopped study, whose runs a
study's run summaries (finished runs only, their end values) leave out.

  python bench/run_history.py --study settled_transformer_share003_paper_wiring \
      --keys aux/weight,aux/grad_share_before,train/acc,val/acc,train/loss

Every nested run of the named study, whatever its status, from the store MLFLOW_TRACKING_URI (or the
embedded one) holds. Writes bench/results/<study>_history.csv: one row per run and epoch, a column
per key, with the run's name and status.
"""
from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    from innerlens.tracking.history import children, children_history, named_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="the study's name (its --study-name)")
    parser.add_argument("--keys", required=True, help="comma-separated metric keys, e.g. train/acc,val/acc")
    args = parser.parse_args()
    found = named_study("self_modeling_comparison", args.study)
    if found is None:
        parser.error(f"no study called {args.study!r} in this store")
    parent, _ = found
    runs = {run.info.run_id: run for run in children(parent)}
    keys = args.keys.split(",")
    tidy = children_history(parent)
    unknown = sorted(set(keys) - set(tidy["key"]))
    if unknown:
        parser.error(f"not logged by {args.study}'s runs: {', '.join(unknown)}")
    table = (tidy[tidy["key"].isin(keys)].pivot_table(index=["run_id", "step"], columns="key", values="value")
             .reset_index()[["run_id", "step", *keys]])
    table.insert(0, "run", table["run_id"].map(lambda run_id: runs[run_id].info.run_name))
    table.insert(1, "status", table["run_id"].map(lambda run_id: runs[run_id].info.status))
    path = RESULTS / f"{args.study}_history.csv"
    table.drop(columns="run_id").rename(columns={"step": "epoch"}).to_csv(path, index=False)
    print(f"{table['run'].nunique()} runs, {len(table)} epochs -> {path}")


if __name__ == "__main__":
    main()
