"""End to end through `mlflow run` against a real tracking server started by deploy/local-server."""
from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import ROOT, TINY, MlflowRun, clean_env

from innerlens import tracking
from innerlens.config import RUN_CONTROL_FIELDS
from innerlens.families.self_modeling import SelfModelingConfig

EPOCH_METRIC_PREFIXES = ("train/", "val/", "test/", "weights/", "selfmodel/")


def _latest(mlflow_run: MlflowRun, server: str, entry: str, params: dict[str, str], experiment: str) -> str:
    """``mlflow run`` the entry point against ``server``; the id of its newest run of that family."""
    mlflow_run(entry, params, experiment=experiment, env=clean_env(MLFLOW_TRACKING_URI=server))
    client = MlflowClient(server)
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        filter_string=f"tags.`innerlens.family` = '{entry}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id


def test_self_modeling_run_is_fully_tracked(mlflow_run: MlflowRun, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {**TINY, "variant": "all_layers", "max_epochs": "4", "patience": "0", "llc_every": "2"}
    run_id = _latest(mlflow_run, mlflow_server, "self_modeling", params, "integration")
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    config = SelfModelingConfig.from_strings(params)

    assert run.info.status == "FINISHED"
    # `mlflow run` created the experiment; innerlens marks it as model training for MLflow 3's UI.
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # `mlflow run` also records the run-control params (`resume`, `force_resume`) it was handed; innerlens never logs them.
    assert {k: v for k, v in run.data.params.items() if k not in RUN_CONTROL_FIELDS} == config.to_params()
    assert run.data.tags["innerlens.family"] == "self_modeling"
    assert run.data.tags["innerlens.variant"] == "all_layers"
    assert run.data.tags["innerlens.seed"] == "0"
    assert len(run.data.tags["innerlens.git_commit"]) in (7, 40) or run.data.tags["innerlens.git_commit"] == "unknown"

    # Per-epoch metrics have one value per epoch; the end-of-run measurements (at the final
    # weights and at the best checkpoint) have exactly one, at the last epoch.
    tracked = [k for k in run.data.metrics if k.startswith(EPOCH_METRIC_PREFIXES)]
    steps = {key: [m.step for m in client.get_metric_history(run_id, key)] for key in tracked}
    epoch_keys = [key for key, seen in steps.items() if len(seen) > 1]
    summary_keys = {key for key, seen in steps.items() if len(seen) == 1}
    assert {f"selfmodel/layer_{layer}/loss" for layer in range(3)} | {"val/acc", "test/acc"} <= set(epoch_keys)
    assert {"test/acc_at_best", "weights/std_final", "weights/std_best", "val/epoch_to_acc_0.95"} <= summary_keys
    for key in epoch_keys:
        assert steps[key] == [1, 2, 3, 4], key
    assert all(steps[key] == [4] for key in summary_keys), {key: steps[key] for key in summary_keys}
    assert [m.step for m in client.get_metric_history(run_id, "llc/mean")] == [2, 4]

    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for folder in ("checkpoints", "figures") for a in client.list_artifacts(run_id, folder)
    }
    assert {"config.json", "history.parquet", "checkpoints/best.pt", "checkpoints/last.pt"} <= artifacts
    assert {f"figures/{name}.png" for name in ("accuracy", "loss", "weight_std", "rlct", "self_model_loss", "learning_dynamics")} <= artifacts

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    tracking.configure_tracking()
    val_acc = [m.value for m in sorted(client.get_metric_history(run_id, "val/acc"), key=lambda m: m.step)]
    best = tracking.load_checkpoint(run_id, "best")
    assert best["epoch"] == 1 + val_acc.index(max(val_acc))  # first epoch reaching the best val/acc
    assert tracking.load_checkpoint(run_id, "last")["epoch"] == 4

    history_path = client.download_artifacts(run_id, "history.parquet")
    history = pd.read_parquet(history_path)
    assert set(history["key"]) >= set(epoch_keys) and history["step"].max() == 4


def test_comparison_nests_variants_and_draws_from_the_server(mlflow_run: MlflowRun, mlflow_server: str) -> None:
    params = {**TINY, "variants": "baseline,last_layer", "seeds": "0,1", "max_epochs": "2", "llc_every": "2"}
    parent_id = _latest(mlflow_run, mlflow_server, "self_modeling_comparison", params, "comparison")
    client = MlflowClient(mlflow_server)
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted((c.data.tags["innerlens.variant"], c.data.tags["innerlens.seed"]) for c in children) == [
        ("baseline", "0"), ("baseline", "1"), ("last_layer", "0"), ("last_layer", "1")
    ]
    assert all(c.info.status == "FINISHED" for c in children)
    figures = {a.path for a in client.list_artifacts(parent_id, "figures")}
    assert len(figures) == 7 and "figures/dose_response.png" in figures  # the six curve figures and the dose-response
    history = pd.read_parquet(client.download_artifacts(parent_id, "history.parquet"))
    means = history[history["key"] == "val/acc"].groupby(["variant", "step"])["value"].mean()
    direct = [
        (c.data.tags["innerlens.variant"], m.step, m.value)
        for c in children
        for m in client.get_metric_history(c.info.run_id, "val/acc")
    ]
    for variant in ("baseline", "last_layer"):
        values = [value for name, step, value in direct if name == variant and step == 2]
        assert len(values) == 2  # one per seed
        assert means[(variant, 2)] == pytest.approx(sum(values) / 2)


def test_skip_training_redraws_the_latest_comparison(mlflow_run: MlflowRun, mlflow_server: str) -> None:
    params = {**TINY, "variants": "baseline", "seeds": "0", "max_epochs": "2", "llc_every": "0"}
    trained = _latest(mlflow_run, mlflow_server, "self_modeling_comparison", params, "redraw")
    redrawn = _latest(mlflow_run, mlflow_server, "self_modeling_comparison", {**params, "skip_training": "true"}, "redraw")
    client = MlflowClient(mlflow_server)
    run = client.get_run(redrawn)
    assert redrawn != trained and run.data.tags["innerlens.drawn_from"] == trained
    assert not client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{redrawn}'")
    assert len(client.list_artifacts(redrawn, "figures")) == 7


def test_embedded_store_keeps_runs_and_artifacts_under_mlruns(tmp_path) -> None:
    args = ["innerlens", "self-modeling", *[a for k, v in {**TINY, "max_epochs": "1", "llc_every": "0"}.items()
                                            for a in (f"--{k.replace('_', '-')}", v)]]
    result = subprocess.run(args, env=clean_env(INNERLENS_HOME=str(tmp_path)), capture_output=True, text=True, timeout=600,
                            cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlruns/mlflow.db" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("innerlens")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # created by innerlens: model training
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns" / "artifacts" / "innerlens").as_uri())
    assert (tmp_path / "mlruns" / "artifacts" / "innerlens" / run.info.run_id / "artifacts" / "config.json").exists()
    assert not (ROOT / "tests" / "mlruns").exists()  # nothing depends on the working directory
