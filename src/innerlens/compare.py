"""Tracking-server queries that turn runs into tidy metric frames for the figure builders."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from innerlens.config import ConfigError
from innerlens.tracking import TAG_FAMILY, TAG_SEED, TAG_VARIANT
from innerlens.viz.curves import TIDY_COLUMNS


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """Runs nested under ``parent`` (e.g. a comparison's variants), oldest first."""
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )


def fetch_history(client: MlflowClient, runs: list[Run], workers: int = 8) -> pd.DataFrame:
    """Every metric's full history of ``runs`` as tidy rows, with variant and seed columns.

    Histories are fetched concurrently, one call per (run, metric).
    """
    jobs = [(run, key) for run in runs for key in run.data.metrics]

    def one(job: tuple[Run, str]) -> pd.DataFrame:
        run, key = job
        history = client.get_metric_history(run.info.run_id, key)
        return pd.DataFrame(
            {
                "run_id": run.info.run_id,
                "variant": run.data.tags.get(TAG_VARIANT, ""),
                "seed": run.data.tags.get(TAG_SEED, ""),
                "step": [m.step for m in history],
                "key": key,
                "value": [m.value for m in history],
            }
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        frames = list(pool.map(one, jobs))
    if not frames:
        return pd.DataFrame(columns=[*TIDY_COLUMNS, "variant", "seed"])
    return pd.concat(frames, ignore_index=True)


def children_history(parent_run_id: str) -> pd.DataFrame:
    """Tidy history of every run nested under ``parent_run_id``."""
    client = MlflowClient()
    return fetch_history(client, child_runs(client, client.get_run(parent_run_id)))


def latest_parent_with_children(family: str, *, exclude: str) -> str:
    """The newest finished ``family`` run (other than ``exclude``) in its experiment that has nested runs."""
    client = MlflowClient()
    experiment_id = client.get_run(exclude).info.experiment_id
    candidates = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_FAMILY}` = '{family}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for candidate in candidates:
        if candidate.info.run_id != exclude and child_runs(client, candidate):
            return candidate.info.run_id
    raise ConfigError(f"--skip-training: no finished {family} run with nested runs in this experiment")
