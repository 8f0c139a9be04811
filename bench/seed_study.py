"""What the seed-study benches share: train (unless ``--summarize-only``) into their own experiment
of the embedded store with two single-threaded workers, and read back the newest finished run of
each cell."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Hashable


def train_unless_summarizing(description: str, experiment: str, train_one: Callable[[Any], str],
                             jobs: list[tuple[str, Any]]) -> None:
    """Parse the bench's one flag; train every job as its own run in ``experiment`` unless it is given."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--summarize-only", action="store_true", help="Do not train; summarise the runs already there.")
    args = parser.parse_args()
    os.environ["MLFLOW_EXPERIMENT_NAME"] = experiment  # the workers inherit it
    if args.summarize_only:
        return
    from innerlens.drivers.local_executor import LocalExecutor

    for result in LocalExecutor(2, 1).run(train_one, jobs):
        print(f"{result.label}: {result.error or result.value}")


def newest_finished_runs(experiment: str, cell: Callable[[Any], Hashable]) -> dict[Hashable, Any]:
    """cell(run) -> the newest FINISHED run of that cell in ``experiment`` (a rerun replaces an older one)."""
    from mlflow.tracking import MlflowClient

    from innerlens import tracking

    tracking.configure_tracking()
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "attributes.status = 'FINISHED'")
    return {cell(run): run for run in sorted(runs, key=lambda r: r.info.start_time)}
