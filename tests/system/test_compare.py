"""compare on a real tracking server seeded with known synthetic runs."""
from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from scipy import stats

from innerlens.drivers.compare import CompareConfig, compare_runs, holm, run
from innerlens.tracking.history import _history_artifact, fetch_histories
from innerlens.viz.curves import mean_and_band

STEPS = 20


def _curve(group: str, seed: int) -> np.ndarray:
    """val/acc rising to a group-specific level, with seed noise: known numbers to check against."""
    level = {"A": 0.6, "B": 0.8}[group]
    rng = np.random.default_rng(seed + (100 if group == "B" else 0))
    return level * (1 - np.exp(-np.arange(1, STEPS + 1) / 5)) + rng.normal(0, 0.02, STEPS)


def _log_run(client: MlflowClient, experiment_id: str, group: str, seed: int, status: str = "FINISHED",
             history_artifact: bool = False) -> str:
    run = client.create_run(experiment_id, tags={"innerlens.family": "synthetic", "innerlens.variant": group,
                                                 "innerlens.seed": str(seed)}, run_name=f"{group}-{seed}")
    now = int(time.time() * 1000)
    values = _curve(group, seed)
    metrics = [Metric("val/acc", float(v), now, step) for step, v in enumerate(values, start=1)]
    metrics += [Metric("val/loss", float(1 - v), now, step) for step, v in enumerate(values, start=1)]
    client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag("note", "synthetic")])
    if history_artifact:  # as family runs leave it; val/loss only, so the rest must come from the metric API
        frame = pd.DataFrame({"step": [m.step for m in metrics if m.key == "val/loss"], "key": "val/loss",
                              "value": [m.value for m in metrics if m.key == "val/loss"]})
        with tempfile.TemporaryDirectory() as tmp:
            frame.to_parquet(Path(tmp) / "history.parquet", index=False)
            client.log_artifact(run.info.run_id, str(Path(tmp) / "history.parquet"))
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def seeded(mlflow_server: str) -> tuple[str, dict[str, str]]:
    client = MlflowClient(mlflow_server)
    name = f"compare-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    other = client.create_experiment(f"{name}-other")
    ids = {f"{g}{s}": _log_run(client, experiment, g, s, history_artifact=s % 2 == 0) for g in ("A", "B") for s in range(4)}
    ids["failed"] = _log_run(client, experiment, "A", 9, status="FAILED")
    ids["elsewhere"] = _log_run(client, other, "B", 7)
    return name, ids


@pytest.fixture
def server_env(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)


def test_groups_bands_and_statistics_equal_direct_computation(seeded: tuple[str, dict[str, str]], server_env: None) -> None:
    name, ids = seeded
    runs, history, summary, statistics = compare_runs(CompareConfig(experiments=(name,), metrics=("val/acc", "val/loss")), progress=False)
    assert set(runs["run_id"]) == {ids[f"{g}{s}"] for g in "AB" for s in range(4)}  # no FAILED run, no other experiment
    assert dict(runs.groupby("group").size()) == {"A": 4, "B": 4}
    assert len(history) == 8 * 2 * STEPS  # every point, fetched in bulk

    band = mean_and_band(history[history["key"] == "val/acc"], "group")
    direct = np.stack([_curve("B", s) for s in range(4)])
    at_step = band[(band["group"] == "B") & (band["step"] == 10)].iloc[0]
    assert at_step["mean"] == pytest.approx(direct[:, 9].mean(), abs=1e-9)
    half_width = stats.t.ppf(0.975, 3) * direct[:, 9].std(ddof=1) / 2
    assert at_step["half_width"] == pytest.approx(half_width, abs=1e-9)

    finals = {g: np.array([_curve(g, s)[-1] for s in range(4)]) for g in "AB"}
    row = statistics[(statistics["key"] == "val/acc") & (statistics["which"] == "final")].iloc[0]
    assert row["group"] == "B" and row["reference"] == "A"
    assert row["welch_p"] == pytest.approx(stats.ttest_ind(finals["B"], finals["A"], equal_var=False).pvalue, rel=1e-9)
    assert row["mwu_p"] == pytest.approx(stats.mannwhitneyu(finals["B"], finals["A"], alternative="two-sided").pvalue, rel=1e-9)
    best_loss = summary[(summary["key"] == "val/loss") & (summary["run_id"] == ids["A0"])]["best"].item()
    assert best_loss == pytest.approx((1 - _curve("A", 0)).min())  # losses: best is the minimum
    assert np.allclose(statistics["welch_p_holm"], holm(statistics["welch_p"].to_numpy()))


def test_history_artifacts_and_metric_api_agree(seeded: tuple[str, dict[str, str]], server_env: None) -> None:
    name, _ = seeded
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], "attributes.status = 'FINISHED'")
    keys = ["val/acc", "val/loss"]
    assert sum(_history_artifact(run, mlflow.get_tracking_uri()) is not None for run in runs) == 4
    mixed = fetch_histories(client, runs, keys)  # half the runs answer val/loss from history.parquet
    api_only = fetch_histories(client, runs, keys, history_artifacts=False)
    assert len(mixed) == 8 * 2 * STEPS
    pd.testing.assert_frame_equal(mixed, api_only)


def test_failed_runs_and_filters_are_honoured(seeded: tuple[str, dict[str, str]], server_env: None) -> None:
    name, ids = seeded
    runs = compare_runs(CompareConfig(experiments=(name,), states=("FINISHED", "FAILED"), metrics=("val/acc",)), progress=False)[0]
    assert ids["failed"] in set(runs["run_id"])
    runs = compare_runs(CompareConfig(experiments=(name, f"{name}-other"), variant="B", metrics=("val/acc",)), progress=False)[0]
    assert set(runs["run_id"]) == {ids[f"B{s}"] for s in range(4)} | {ids["elsewhere"]}
    runs = compare_runs(CompareConfig(experiments=(name,), filter="tags.`innerlens.seed` = '2'", group_by=("seed",)), progress=False)[0]
    assert sorted(runs["group"]) == ["2", "2"]


def test_holm_matches_the_textbook_example() -> None:
    assert np.allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])


def test_compare_run_logs_report_and_figures(seeded: tuple[str, dict[str, str]], server_env: None, tmp_path: Path) -> None:
    name, _ = seeded
    config = CompareConfig(experiments=(name,), individual_runs=True, scatter=("final:val/acc", "best:val/loss"), output_dir=str(tmp_path / "out"))
    run_id = run(config, progress=False)
    client = MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {"report.html", "figures/curves.png", "figures/final_values.png", "figures/best_values.png", "figures/scatter.png"} <= artifacts
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4 and "statistics against the reference" in report
    assert name in report  # the query that produced it
    statistics = pd.read_csv(client.download_artifacts(run_id, "tables/statistics.csv"))
    assert set(statistics["key"]) == {"val/acc", "val/loss"}


def test_figure_names_built_from_group_labels_are_path_safe() -> None:
    from innerlens.tracking import figure_name

    assert figure_name("dose_response/middle_layer w=0.01") == "dose_response/middle_layer_w=0.01"
    assert figure_name("heatmaps/../../etc passwd") == "heatmaps/_/_/etc_passwd"
    assert figure_name("curves") == "curves"


def test_the_private_bulk_endpoint_answers_what_the_public_api_does(seeded: tuple[str, dict[str, str]], server_env: None,
                                                                   mlflow_server: str) -> None:
    """MLflow's bulk-history endpoint is its UI's, not public API: an upgrade that moves or reshapes it fails here."""
    from mlflow.utils.credentials import get_default_host_creds

    from innerlens.tracking import history

    client = MlflowClient(mlflow_server)
    _, ids = seeded
    run_ids = [ids["A0"], ids["B1"], ids["A2"]]
    public = pd.concat([history.metric_history(client, run_id, "val/acc") for run_id in run_ids], ignore_index=True)
    expected = sorted(zip(public["run_id"], public["step"], public["value"]))
    raw = history._bulk(get_default_host_creds(mlflow_server), run_ids, "val/acc")  # no fallback
    assert sorted((p["run_id"], p["step"], p["value"]) for p in raw) == expected
    with pytest.warns(UserWarning, match="bulk metric endpoint failed"):  # an endpoint that is gone: the public API
        moved = history.bulk_metric_history(client, get_default_host_creds(f"{mlflow_server}/moved"), run_ids, "val/acc")
    assert sorted(zip(moved["run_id"], moved["step"], moved["value"])) == expected


def test_a_run_that_never_generalised_is_censored_not_fastest(mlflow_server: str, server_env: None) -> None:
    """grok/generalization_step is -1 where it never happened: compare must not rank that run first,
    must count it censored at its last step, and must draw it apart in the figure."""
    from innerlens.viz.compare import summary_strips

    client = MlflowClient(mlflow_server)
    name = f"censored-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    steps = {"fast": [300, 320, 340], "slow": [600, 650, -1]}  # slow seed 2 never generalised by step 1000
    for group, values in steps.items():
        for seed, value in enumerate(values):
            run = client.create_run(experiment, tags={"innerlens.family": "synthetic", "innerlens.variant": group,
                                                      "innerlens.seed": str(seed)})
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id, metrics=[Metric("val/acc", 0.5, now, step) for step in (500, 1000)]
                             + [Metric("grok/generalization_step", float(value), now, 1000)])
            client.set_terminated(run.info.run_id)
    config = CompareConfig(experiments=(name,), group_by=("variant",), metrics=("grok/generalization_step",),
                           reference="fast", workers=1)
    _, _, summary, statistics = compare_runs(config, progress=False)
    never = summary[summary["final"] == 1000]
    assert len(never) == 1 and not never["observed"].item() and np.isnan(never["best"].item())
    assert summary["final"].min() == 300  # the censored run is not the fastest
    row = statistics[statistics["key"] == "grok/generalization_step"].iloc[0]
    assert row["censored"] == 1 and row["censored_reference"] == 0 and row["mean_kind"].startswith("restricted mean")
    assert row["mean"] == pytest.approx((600 + 650 + 1000) / 3)  # KM restricted mean to step 1000
    assert row["mean_reference"] == pytest.approx(320) and row["mwu_p"] < 0.1
    figure = summary_strips(summary, statistics, "final")
    labels = [text.get_text() for ax in figure.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
    assert any("censored" in label for label in labels)
