"""Where a study's wall time went: per nested run, the time to its first epoch, training (first to
last ``val/acc``), the end-of-run report (LLC, figures) and its total, from the runs' own timestamps;
with the parent's time before the first run and after the last.

Run: ``python bench/demo_phases.py PARENT_RUN_ID [--tracking-uri URI]`` (default: the embedded store
``make demo`` writes, ``sqlite:///mlruns/mlflow.db``).
"""
from __future__ import annotations

import argparse

import mlflow
from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parent")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    args = parser.parse_args()
    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient()
    parent = client.get_run(args.parent)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{args.parent}'")
    print(f"parent {(parent.info.end_time - parent.info.start_time) / 1000:.0f} s")
    for run in sorted(children, key=lambda r: r.info.start_time):
        stamps = sorted(m.timestamp for m in client.get_metric_history(run.info.run_id, "val/acc"))
        start, end = run.info.start_time, run.info.end_time
        print(f"{run.data.tags.get('innerlens.task', run.info.run_name):28s} starts at +{(start - parent.info.start_time) / 1000:4.0f} s: "
              f"to first epoch {(stamps[0] - start) / 1000:4.1f} s, training {(stamps[-1] - stamps[0]) / 1000:5.1f} s, "
              f"report {(end - stamps[-1]) / 1000:5.1f} s, total {(end - start) / 1000:5.1f} s")
    first = min(r.info.start_time for r in children)
    last = max(r.info.end_time for r in children)
    print(f"parent before the first run {(first - parent.info.start_time) / 1000:.1f} s, after the last {(parent.info.end_time - last) / 1000:.1f} s")


if __name__ == "__main__":
    main()
