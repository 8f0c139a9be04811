"""Reading many runs back at once: a study's nested runs, and metric histories in bulk.

A run's ``history.parquet`` holds every metric of its fit in one download; what it leaves out
comes from the metric API. Against a tracking server the metric API is asked through MLflow's
bulk-history endpoint, which its own UI uses but which is not part of the public REST API:
:func:`bulk_metric_history` is the one place that calls it, falls back to the public
per-run API when the endpoint answers anything unexpected, and a test compares the two.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from innerlens.errors import ConfigError
from innerlens.tracking.redaction import redact_secrets
from innerlens.tracking.store import TAG_FAMILY, TAG_SEED, TAG_VARIANT


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """Runs nested under ``parent`` (e.g. a comparison's variants), oldest first."""
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )


def fetch_history(client: MlflowClient | None, runs: list[Run], workers: int = 8,
                  known: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Every metric's full history of ``runs`` as tidy rows, with variant and seed columns; runs in
    ``known`` (run id -> the (step, key, value) rows the study's own runs returned) are not asked for."""
    wanted = {run.info.run_id for run in runs}
    known = {run_id: frame for run_id, frame in (known or {}).items() if run_id in wanted}
    unknown = [run for run in runs if run.info.run_id not in known]
    keys = sorted({key for run in unknown for key in run.data.metrics})
    frames = [frame.assign(run_id=run_id) for run_id, frame in known.items()]
    if unknown or not frames:
        frames.append(fetch_histories(client, unknown, keys, workers=workers))
    tidy = pd.concat(frames, ignore_index=True).astype({"step": "int64", "value": "float64"})
    labels = pd.DataFrame({
        "run_id": [run.info.run_id for run in runs],
        "variant": [run.data.tags.get(TAG_VARIANT, "") for run in runs],
        "seed": [run.data.tags.get(TAG_SEED, "") for run in runs],
    })
    return tidy.merge(labels, on="run_id")[["run_id", "step", "key", "value", "variant", "seed"]]


def children(parent_run_id: str) -> list[Run]:
    """Runs nested under the run ``parent_run_id``, oldest first."""
    client = MlflowClient()
    return child_runs(client, client.get_run(parent_run_id))


def children_history(parent_run_id: str, known: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Tidy history of every run nested under ``parent_run_id`` (``known``: see :func:`fetch_history`)."""
    client = MlflowClient()
    return fetch_history(client, child_runs(client, client.get_run(parent_run_id)), known=known)


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


def named_study(family: str, run_name: str) -> tuple[str, dict[str, str]] | None:
    """(run id, params) of the newest ``family`` parent run called ``run_name`` in the experiment runs go
    to, whatever its status: a study re-run under the same name continues it. Called before any run is
    opened, so it points MLflow at the store first (else it would search MLflow's default, not ours)."""
    from innerlens.tracking.store import configure_tracking, experiment_id

    configure_tracking()
    client = MlflowClient()

    runs = client.search_runs(
        [experiment_id(client)],
        filter_string=f"tags.`{TAG_FAMILY}` = '{family}' and attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return (runs[0].info.run_id, runs[0].data.params) if runs else None


BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"


BULK_MAX_POINTS = 25_000  # the server truncates a bulk answer here


BULK_MAX_RUNS = 100


def _bulk(host_creds: Any, run_ids: list[str], key: str) -> list[dict[str, Any]]:
    """One metric of up to 100 runs in one request to the bulk endpoint (MLflow's UI's, not public);
    halves the batch when the answer may be truncated."""
    from mlflow.utils.rest_utils import http_request

    response = http_request(host_creds, BULK_ENDPOINT, "GET",
                            params={"run_id": run_ids, "metric_key": key, "max_results": BULK_MAX_POINTS})
    response.raise_for_status()
    points = response.json()["metrics"]
    if points and not BULK_FIELDS <= set(points[0]):
        raise ValueError(f"{BULK_ENDPOINT} answered points with fields {sorted(points[0])}")
    if len(points) >= BULK_MAX_POINTS and len(run_ids) > 1:
        half = len(run_ids) // 2
        return _bulk(host_creds, run_ids[:half], key) + _bulk(host_creds, run_ids[half:], key)
    return points


BULK_FIELDS = {"run_id", "key", "step", "value"}


def metric_history(client: MlflowClient | None, run_id: str, key: str) -> pd.DataFrame:
    """One run's history of one metric through the public API."""
    history = (client or MlflowClient()).get_metric_history(run_id, key)
    return pd.DataFrame({"run_id": run_id, "key": key, "step": [m.step for m in history], "value": [m.value for m in history]})


def bulk_metric_history(client: MlflowClient, host_creds: Any, run_ids: list[str], key: str) -> pd.DataFrame:
    """One metric of many runs: one bulk request, or, if the endpoint answers anything unexpected
    (an MLflow upgrade may move it), the public API run by run, with one warning."""
    import requests

    try:
        return pd.DataFrame(_bulk(host_creds, run_ids, key), columns=["run_id", "key", "step", "value", "timestamp"])
    except (requests.RequestException, ValueError, KeyError) as error:
        warnings.warn(f"MLflow's bulk metric endpoint failed ({error}); reading histories one run at a time", stacklevel=2)
        return pd.concat([metric_history(client, run_id, key) for run_id in run_ids], ignore_index=True)


HISTORY_ARTIFACT = "history.parquet"


HISTORY_COLUMNS = ["key", "step", "value"]


def _history_artifact(run: Run, tracking_uri: str) -> pa.Table | None:
    """The run's ``history.parquet`` (every metric the engine logged) read in memory, or None without one.

    Behind a tracking server that proxies artifacts this is one GET per run, with no listing
    and no temporary file; other artifact stores go through MLflow's download.
    """
    import requests
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
    from mlflow.utils.credentials import get_default_host_creds  # honours MLFLOW_TRACKING_USERNAME/PASSWORD
    from mlflow.utils.rest_utils import http_request

    uri = run.info.artifact_uri
    try:
        if uri.startswith("mlflow-artifacts:") and tracking_uri.startswith(("http://", "https://")):
            base = MlflowArtifactsRepository.resolve_uri(uri, tracking_uri)
            response = http_request(get_default_host_creds(base), f"/{HISTORY_ARTIFACT}", "GET")
            if response.status_code != 200:
                return None  # a running or foreign run: the metric API covers it
            return pq.read_table(io.BytesIO(response.content), columns=HISTORY_COLUMNS)
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{HISTORY_ARTIFACT}", dst_path=tmp)
            return pq.read_table(path, columns=HISTORY_COLUMNS)
    except (MlflowException, OSError, requests.RequestException):
        return None


def _tidy_histories(runs: list[Run], tables: list[pa.Table | None], keys: list[str]) -> pd.DataFrame:
    """One frame from every run's history table: concatenated in Arrow, converted to pandas once."""
    present = [(run, table) for run, table in zip(runs, tables) if table is not None]
    if not present:
        return pd.DataFrame(columns=["run_id", *HISTORY_COLUMNS])
    joined = pa.concat_tables([table for _, table in present])
    run_ids = pa.array(np.repeat([run.info.run_id for run, _ in present], [table.num_rows for _, table in present]))
    joined = joined.append_column("run_id", run_ids)
    return joined.filter(pc.is_in(joined["key"], pa.array(keys))).to_pandas()


def _metric_api_jobs(client: MlflowClient, wanted: dict[str, list[str]]) -> tuple[list[Any], Callable[[Any], pd.DataFrame]]:
    """(jobs, fetch one job) for the metric API: bulk per key and 24 runs on a server, per (run, key) locally."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        from mlflow.utils.credentials import get_default_host_creds  # honours MLFLOW_TRACKING_USERNAME/PASSWORD

        creds = get_default_host_creds(uri)
        batch = BULK_MAX_POINTS // 1000 - 1  # 24 runs of 1,000 steps fit one answer; longer ones are split
        jobs = [(ids[i : i + batch], key) for key, ids in wanted.items() for i in range(0, len(ids), batch)]

        def one(job: tuple[list[str], str]) -> pd.DataFrame:
            return bulk_metric_history(client, creds, *job)

        return jobs, one
    jobs = [(run_id, key) for key, ids in wanted.items() for run_id in ids]

    return jobs, lambda job: metric_history(client, *job)


def fetch_histories(client: MlflowClient | None, runs: list[Run], keys: list[str], *, workers: int = 16,
                    progress: bool = False, history_artifacts: bool = True) -> pd.DataFrame:
    """Tidy (run_id, key, step, value) of every run's history of every key.

    First each run's ``history.parquet`` (one download per run holds every metric of the fit);
    what that leaves out (running runs, metrics logged after the fit) comes from the metric API:
    against a tracking server one bulk request per key and 24 runs, locally one call per
    (run, key). Everything is requested in parallel.
    """

    from tqdm.auto import tqdm

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar for all, not one per file
    frames: list[pd.DataFrame] = []
    covered: dict[str, set[str]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if history_artifacts:
            uri = mlflow.get_tracking_uri()
            tables = list(tqdm(pool.map(lambda run: _history_artifact(run, uri), runs), total=len(runs),
                               desc="history.parquet", disable=not progress, leave=False))
            frames.append(_tidy_histories(runs, tables, keys))
            covered = {run.info.run_id: set(pc.unique(table["key"]).to_pylist())
                       for run, table in zip(runs, tables) if table is not None}
        wanted = {key: [r.info.run_id for r in runs if key not in covered.get(r.info.run_id, ())] for key in keys}
        jobs, one = _metric_api_jobs(client or MlflowClient(), {key: ids for key, ids in wanted.items() if ids})
        frames += tqdm(pool.map(one, jobs), total=len(jobs), desc="metric histories", disable=not progress, leave=False)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["run_id", "key", "step", "value"])
    tidy = pd.concat([f[["run_id", "key", "step", "value"]] for f in frames], ignore_index=True)
    tidy["step"] = tidy["step"].astype(int)
    tidy["value"] = tidy["value"].astype(float)
    return tidy.sort_values(["run_id", "key", "step"], ignore_index=True)


def search_runs(experiments: tuple[str, ...], filter_string: str, max_results: int) -> list[Run]:
    """Runs of the named experiments that match an MLflow filter, oldest first; a bad name or filter is one line."""
    client = MlflowClient()
    ids = []
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise ConfigError(f"--experiments: no experiment named {name!r} on {redact_secrets(mlflow.get_tracking_uri())}")
        ids.append(experiment.experiment_id)
    try:
        return client.search_runs(ids, filter_string=filter_string, max_results=max_results, order_by=["attributes.start_time ASC"])
    except MlflowException as error:
        raise ConfigError(f"--filter: {error.message.splitlines()[0]}") from None
