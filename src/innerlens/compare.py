"""Tracking-server queries that turn runs into tidy metric frames for the figure builders."""
from __future__ import annotations

import html
import io
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from scipy import stats

from innerlens import registry
from innerlens.analysis.stats import holm, paired_statistics
from innerlens.config import ConfigError, redact_secrets
from innerlens.configs.compare import FAMILY, CompareConfig
from innerlens.tracking import DEFAULT_EXPERIMENT, TAG_FAMILY, TAG_SEED, TAG_VARIANT
from innerlens.viz.compare import group_order
from innerlens.viz.curves import TIDY_COLUMNS, metric_curves

FAMILIES = {entry.name for entry in registry.ENTRY_POINTS if entry.is_family}


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """Runs nested under ``parent`` (e.g. a comparison's variants), oldest first."""
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10_000,
    )


def fetch_history(client: MlflowClient, runs: list[Run], workers: int = 8) -> pd.DataFrame:
    """Every metric's full history of ``runs`` as tidy rows, with variant and seed columns."""
    keys = sorted({key for run in runs for key in run.data.metrics})
    tidy = fetch_histories(client, runs, keys, workers=workers)
    labels = pd.DataFrame({
        "run_id": [run.info.run_id for run in runs],
        "variant": [run.data.tags.get(TAG_VARIANT, "") for run in runs],
        "seed": [run.data.tags.get(TAG_SEED, "") for run in runs],
    })
    return tidy.merge(labels, on="run_id")[[*TIDY_COLUMNS, "variant", "seed"]]


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


# ---------------------------------------------------------------------------------------------
# The compare entry point: select runs, fetch their histories in bulk, group, test, draw, report.
# ---------------------------------------------------------------------------------------------

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_MAX_POINTS = 25_000  # the server truncates a bulk answer here
BULK_MAX_RUNS = 100


def _search_filter(config: CompareConfig) -> str:
    clauses = [config.filter] if config.filter else []  # MLflow filters are AND-only, no parentheses
    for tag, value in ((TAG_FAMILY, config.family), (TAG_VARIANT, config.variant), ("innerlens.study", config.study)):
        if value:
            clauses.append(f"tags.`{tag}` = '{value}'")
    return " and ".join(clauses)


def select_runs(client: MlflowClient, config: CompareConfig) -> list[Run]:
    """Runs of the named experiments matching the filter and tags, in the wanted states (compare runs excluded)."""
    import os

    names = config.experiments or (os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT),)
    ids = []
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise ConfigError(f"--experiments: no experiment named {name!r} on {redact_secrets(mlflow.get_tracking_uri())}")
        ids.append(experiment.experiment_id)
    try:
        runs = client.search_runs(ids, filter_string=_search_filter(config), max_results=config.max_runs,
                                  order_by=["attributes.start_time ASC"])
    except MlflowException as error:
        raise ConfigError(f"--filter: {error.message.splitlines()[0]}") from None
    return [r for r in runs if r.info.status in config.states and r.data.tags.get(TAG_FAMILY) != FAMILY]


def group_value(run: Run, name: str) -> str:
    """A run's value of a group-by name: params.X, tags.X, or an innerlens tag, else a param."""
    if name.startswith("params."):
        return run.data.params.get(name[7:], "")
    if name.startswith("tags."):
        return run.data.tags.get(name[5:], "")
    tag = run.data.tags.get(f"innerlens.{name}")
    return tag if tag is not None else run.data.params.get(name, run.data.tags.get(name, ""))


def run_table(runs: list[Run], group_by: tuple[str, ...]) -> pd.DataFrame:
    """One row per run: id, group label, seed, experiment, family."""
    return pd.DataFrame({
        "run_id": [r.info.run_id for r in runs],
        "group": ["/".join(group_value(r, name) for name in group_by) or "all" for r in runs],
        "seed": [r.data.tags.get(TAG_SEED, "") for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "family": [r.data.tags.get(TAG_FAMILY, "") for r in runs],
        "run_name": [r.info.run_name for r in runs],
    })


def paired_final_statistics(summary: pd.DataFrame, runs: pd.DataFrame, selected: list[Run], paired_by: str, reference: str) -> pd.DataFrame:
    """Paired statistics of final values, pairing runs on the value of ``paired_by``."""
    units = pd.DataFrame({"run_id": [r.info.run_id for r in selected], "unit": [group_value(r, paired_by) for r in selected]})
    table = summary.merge(units, on="run_id")[["group", "unit", "key", "final"]].rename(columns={"final": "value"})
    return paired_statistics(table, reference, unit="unit")


def _bulk(host_creds: Any, run_ids: list[str], key: str) -> list[dict[str, Any]]:
    """One metric of up to 100 runs in one request; halves the batch when the answer may be truncated."""
    from mlflow.utils.rest_utils import http_request

    response = http_request(host_creds, BULK_ENDPOINT, "GET",
                            params={"run_id": run_ids, "metric_key": key, "max_results": BULK_MAX_POINTS})
    response.raise_for_status()
    points = response.json().get("metrics", [])
    if len(points) >= BULK_MAX_POINTS and len(run_ids) > 1:
        half = len(run_ids) // 2
        return _bulk(host_creds, run_ids[:half], key) + _bulk(host_creds, run_ids[half:], key)
    return points


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
            return pd.DataFrame(_bulk(creds, *job), columns=["run_id", "key", "step", "value", "timestamp"])

        return jobs, one
    jobs = [(run_id, key) for key, ids in wanted.items() for run_id in ids]

    def one_local(job: tuple[str, str]) -> pd.DataFrame:
        run_id, key = job
        history = client.get_metric_history(run_id, key)
        return pd.DataFrame({"run_id": run_id, "key": key, "step": [m.step for m in history], "value": [m.value for m in history]})

    return jobs, one_local


def fetch_histories(client: MlflowClient, runs: list[Run], keys: list[str], *, workers: int = 16,
                    progress: bool = False, history_artifacts: bool = True) -> pd.DataFrame:
    """Tidy (run_id, key, step, value) of every run's history of every key.

    First each run's ``history.parquet`` (one download per run holds every metric of the fit);
    what that leaves out (running runs, metrics logged after the fit) comes from the metric API:
    against a tracking server one bulk request per key and 24 runs, locally one call per
    (run, key). Everything is requested in parallel.
    """
    import os

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
        jobs, one = _metric_api_jobs(client, {key: ids for key, ids in wanted.items() if ids})
        frames += tqdm(pool.map(one, jobs), total=len(jobs), desc="metric histories", disable=not progress, leave=False)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["run_id", "key", "step", "value"])
    tidy = pd.concat([f[["run_id", "key", "step", "value"]] for f in frames], ignore_index=True)
    tidy["step"] = tidy["step"].astype(int)
    tidy["value"] = tidy["value"].astype(float)
    return tidy.sort_values(["run_id", "key", "step"], ignore_index=True)


HIGHER_IS_BETTER = ("acc", "auc", "r2", "accuracy", "p_correct", "delta_vs_probe")


def direction(key: str) -> str | None:
    """"min" or "max" for metrics with a declared direction; None for the rest and for every ``test/``
    metric, whose best over training would be selection on the test set."""
    if key.startswith("test/"):
        return None
    name = key.split("/")[-1]
    if "loss" in name or name == "nll" or key.endswith(("_step", "_steps")) or key.startswith(("weights/std", "llc/")):
        return "min"  # complexity measures: smaller is simpler
    if name.startswith(HIGHER_IS_BETTER):
        return "max"
    return None


def summaries(history: pd.DataFrame) -> pd.DataFrame:
    """Per (run, key): the final value (at the last step) and the best (NaN without a declared direction)."""
    ordered = history.sort_values("step")
    grouped = ordered.groupby(["run_id", "key"])["value"]
    table = pd.DataFrame({"final": grouped.last(), "max": grouped.max(), "min": grouped.min()}).reset_index()
    directions = table["key"].map(direction)
    table["best"] = np.where(directions == "min", table["min"], np.where(directions == "max", table["max"], np.nan))
    return table.drop(columns=["max", "min"])


STATISTICS_COLUMNS = ["key", "which", "group", "reference", "n", "n_reference", "mean", "mean_reference",
                      "welch_t", "welch_p", "mwu_u", "mwu_p", "cohens_d", "rank_biserial"]


def group_statistics(summary: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every group against ``reference`` per (key, final|best): Welch t, Mann-Whitney U, effect sizes, Holm-corrected."""
    rows = []
    for (key, which), table in summary.melt(id_vars=["run_id", "group", "key"], value_vars=["final", "best"],
                                             var_name="which").groupby(["key", "which"]):
        ref = table.loc[table["group"] == reference, "value"].to_numpy()
        for group, values in table[table["group"] != reference].groupby("group")["value"]:
            other = values.to_numpy()
            row = {"key": key, "which": which, "group": group, "reference": reference, "n": len(other), "n_reference": len(ref),
                   "mean": other.mean(), "mean_reference": ref.mean() if len(ref) else np.nan}
            if len(other) >= 2 and len(ref) >= 2:
                welch = stats.ttest_ind(other, ref, equal_var=False)
                mwu = stats.mannwhitneyu(other, ref, alternative="two-sided")
                pooled = np.sqrt((other.var(ddof=1) + ref.var(ddof=1)) / 2)
                row.update({"welch_t": welch.statistic, "welch_p": welch.pvalue, "mwu_u": mwu.statistic, "mwu_p": mwu.pvalue,
                            "cohens_d": (other.mean() - ref.mean()) / pooled if pooled > 0 else np.nan,
                            "rank_biserial": 2 * mwu.statistic / (len(other) * len(ref)) - 1})
            rows.append(row)
    result = pd.DataFrame(rows, columns=STATISTICS_COLUMNS)
    for column in ("welch_p", "mwu_p"):
        tested = result[column].notna()
        result.loc[tested, f"{column}_holm"] = holm(result.loc[tested, column].to_numpy())
    return result


def _run_links(runs: pd.DataFrame) -> list[str]:
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else None
    links = []
    for row in runs.itertuples():
        label = html.escape(f"{row.group} · {row.run_name} · {row.run_id}")
        links.append(f"<a href='{base}/#/experiments/{row.experiment_id}/runs/{row.run_id}'>{label}</a>" if base else label)
    return links


def compare_runs(config: CompareConfig, *, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, tidy history with group, per-run summaries, group statistics) for the selected runs."""
    client = MlflowClient()
    selected = select_runs(client, config)
    if not selected:
        raise ConfigError(f"no runs match: experiments {config.experiments or 'default'}, filter {_search_filter(config) or 'none'}, states {','.join(config.states)}")
    runs = run_table(selected, config.group_by)
    keys = list(config.metrics)
    if not keys:
        families = set(runs["family"])
        present = sorted({k for r in selected for k in r.data.metrics})
        headline = registry.family(families.pop()).headline_metrics if len(families) == 1 and families <= FAMILIES else ()
        keys = [k for k in headline if k in present]
        keys = keys or present
    history = fetch_histories(client, selected, keys, workers=config.workers, progress=progress)
    history = history.merge(runs[["run_id", "group", "seed"]], on="run_id")
    summary = summaries(history).merge(runs[["run_id", "group"]], on="run_id")
    groups = group_order(runs["group"])
    reference = config.reference if config.reference is not None else groups[0]
    if reference not in groups:
        raise ConfigError(f"--reference {reference!r} is not a group; groups: {', '.join(groups)}")
    if config.paired_by:
        return runs, history, summary, paired_final_statistics(summary, runs, selected, config.paired_by, reference)
    return runs, history, summary, group_statistics(summary, reference)


def run(config: CompareConfig, *, nested: bool = False, progress: bool = True) -> str:
    """Compare, then log the report, figures and tables as artifacts of a ``compare`` run."""
    from innerlens import tracking
    from innerlens.viz import compare as viz

    tracking.configure_tracking()
    tracking.check_tracking_store(MlflowClient())  # an unreachable server: one line, not a traceback
    runs, history, summary, statistics = compare_runs(config, progress=progress)
    keys = list(dict.fromkeys(history["key"]))
    figures: dict[str, Figure] = {"curves": metric_curves(history, keys, group="group", title="Metrics by group",
                                                          xlabel="step", individual=config.individual_runs)}
    for which in ("final", "best"):
        figures[f"{which}_values"] = viz.summary_strips(summary, statistics, which)
    if config.scatter:
        figures["scatter"] = viz.summary_scatter(summary, *config.scatter)
    if runs["family"].nunique() == 1:  # the family's own figures, when every compared run belongs to one
        figures.update(registry.comparison_figures(runs["family"].iloc[0], history, runs, summary))
    pngs = {name: viz.png(figure) for name, figure in figures.items()}
    query = {"tracking_uri": redact_secrets(mlflow.get_tracking_uri()), "experiments": list(config.experiments) or "default",
             "filter": _search_filter(config) or None, "states": list(config.states), "group_by": list(config.group_by),
             "metrics": keys, "runs": len(runs)}
    tables = {"runs per group": runs.groupby("group").size().rename("runs").reset_index(),
              "final and best values": summary.groupby(["key", "group"])[["final", "best"]].agg(["mean", "std", "count"]).reset_index(),
              "statistics against the reference": statistics}
    report = viz.html_report("innerlens comparison", query, pngs, tables, _run_links(runs))
    with tracking.start_run(config, variant="/".join(config.group_by), run_name="compare", nested=nested) as tracker:
        tracker.log_text(report, "report.html")
        for name, data in pngs.items():
            tracker.log_bytes(data, f"figures/{name}.png")
        tracker.log_text(statistics.to_csv(index=False), "tables/statistics.csv")
        tracker.log_text(summary.to_csv(index=False), "tables/summary.csv")
        tracker.set_tags({"innerlens.compared_runs": str(len(runs))})
        if config.output_dir:
            out = Path(config.output_dir)
            (out / "figures").mkdir(parents=True, exist_ok=True)
            (out / "report.html").write_text(report)
            for name, data in pngs.items():
                (out / "figures" / f"{name}.png").write_bytes(data)
        return tracker.run_id
