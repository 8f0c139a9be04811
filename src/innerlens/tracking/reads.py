"""Reading runs back: checkpoints, configs, histories, artifacts, and a study's run for a task."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from innerlens.errors import ConfigError
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import TAG_FAMILY, TAG_TASK, TAG_UNIT


def last_logged_step(run_id: str, key: str) -> int:
    """The highest step of ``key`` the run has logged (0 when none)."""
    return max((m.step for m in MlflowClient().get_metric_history(run_id, key)), default=0)


def load_checkpoint(run_id: str, name: str = "last") -> dict[str, Any]:
    """Download ``checkpoints/<name>.pt`` of a run and load it with ``weights_only=True``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"checkpoints/{name}.pt", dst_path=tmp
        )
        return torch.load(path, map_location="cpu", weights_only=True)


def list_checkpoints(run_id: str, folder: str = "") -> list[str]:
    """Checkpoint names (without ``.pt``) under ``checkpoints/<folder>`` of a run, sorted."""
    path = f"checkpoints/{folder}".rstrip("/")
    entries = MlflowClient().list_artifacts(run_id, path)
    return sorted(Path(e.path).stem for e in entries if e.path.endswith(".pt"))


def load_config(run_id: str, family: str) -> dict[str, Any]:
    """The ``config.json`` a run of ``family`` was started with (one-line error otherwise)."""
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"no run {run_id!r} in tracking store {redact_secrets(mlflow.get_tracking_uri())}") from None
    if run.data.tags.get(TAG_FAMILY) != family:
        raise ConfigError(f"run {run_id} is a {run.data.tags.get(TAG_FAMILY)!r} run, not {family!r}")
    return json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.json"))


def load_history(run_id: str) -> pd.DataFrame:
    """A finished run's ``history.parquet`` (tidy step, key, value)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="history.parquet", dst_path=tmp)
        return pd.read_parquet(path)


def download_run_artifacts(run_id: str, destination: Path) -> Path:
    """Copy every artifact of a run into ``destination`` (a local copy next to the store)."""
    destination.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(destination))
    return destination


def task_run(parent_run_id: str, task: str) -> tuple[str, str] | None:
    """(run id, status) of the run an earlier attempt of ``task`` started under the parent, if any.

    A task retried after its worker died continues that run (``--resume``) instead of starting a second one.
    """
    runs = MlflowClient().search_runs(
        [MlflowClient().get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_TASK}` = '{task}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return (runs[0].info.run_id, runs[0].info.status) if runs else None


def running_runs_of_unit(parent_run_id: str, unit: str) -> list[str]:
    """Ids of the runs under the parent still RUNNING that the executor's task ``unit`` trains."""
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{TAG_UNIT}` = '{unit}' "
                      "and attributes.status = 'RUNNING'",
    )
    return [run.info.run_id for run in runs]


def read_csv_artifact(run_id: str, path: str) -> pd.DataFrame:
    """A table a run logged (``tables/...csv``), read back."""
    return pd.read_csv(MlflowClient().download_artifacts(run_id, path))
