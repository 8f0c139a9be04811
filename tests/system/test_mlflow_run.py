"""Every entry point through `mlflow run` against a real tracking server (one `mlflow_run` fixture)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from support import TINY_SELF_MODELING, MlflowRun, clean_env

# Groks in well under a minute on two CPU cores (memorizes by ~100 steps, generalizes by ~2.5k).
SMALL_GROKKING = {
    "p": "23",
    "train_fraction": "0.7",
    "val_fraction": "0.15",
    "test_fraction": "0.15",
    "lr": "0.003",
    "d_model": "64",
    "d_head": "16",
    "d_mlp": "256",
    "max_steps": "4000",
    "eval_every": "100",
    "analysis_every": "500",
    "snapshots": "6",
    "target_accuracy": "0.99",
}


def test_small_task_groks_through_mlflow_run(mlflow_server: str, mlflow_run: MlflowRun, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow_run("grokking", SMALL_GROKKING, experiment="grokking", env=clean_env(MLFLOW_TRACKING_URI=mlflow_server))
    client = MlflowClient(mlflow_server)
    run = client.search_runs([client.get_experiment_by_name("grokking").experiment_id])[0]
    run_id, metrics = run.info.run_id, run.data.metrics

    assert run.info.status == "FINISHED" and run.data.tags["innerlens.step_unit"] == "step"
    assert run.data.tags["innerlens.grokked"] == "true"
    assert 0 < metrics["grok/memorization_step"] < metrics["grok/generalization_step"]
    assert metrics["grok/gap_steps"] == metrics["grok/generalization_step"] - metrics["grok/memorization_step"]
    assert metrics["val/acc"] >= 0.99
    steps = [m.step for m in client.get_metric_history(run_id, "val/acc")]
    assert steps == list(range(100, steps[-1] + 1, 100))  # one value per evaluation, logged against the step
    assert [m.step for m in client.get_metric_history(run_id, "grok/excluded_loss")][:2] == [500, 1000]
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {f"figures/{n}" for n in ("training_dynamics.png", "progress_measures.png", "fourier_spectrum.png",
                                      "attention_evolution.png", "embedding_evolution.png", "dashboard.html")} <= figures
    dashboard = open(client.download_artifacts(run_id, "figures/dashboard.html")).read()
    assert "plotly" in dashboard.lower() and "<script src=" not in dashboard  # self-contained
    snapshots = [a.path for a in client.list_artifacts(run_id, "checkpoints/steps")]
    assert snapshots[0].endswith("step_000000.pt") and len(snapshots) >= 4

    # `innerlens analyze` redoes the analyses from the snapshots with the final key frequencies
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    analysis = subprocess.run(
        ["innerlens", "analyze", run_id], env=clean_env(MLFLOW_TRACKING_URI=mlflow_server), capture_output=True, text=True, timeout=600
    )
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    assert f"generalized at {metrics['grok/generalization_step']:g}" in analysis.stdout
    history = pd.read_parquet(client.download_artifacts(run_id, "history.parquet"))
    final_keys = history[history["key"] == "final_keys/grok/restricted_loss"]
    assert len(final_keys) == len(snapshots)
    # with the final model's frequencies, restricted loss ends far below excluded loss
    last = history[history["step"] == history["step"].max()].set_index("key")["value"]
    assert last["final_keys/grok/restricted_loss"] < last["final_keys/grok/excluded_loss"]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_introspection_through_mlflow_run(mlflow_server: str, mlflow_run: MlflowRun, tmp_path: Path) -> None:
    # the seed script's spellings (epochs, token_pos, regression) reach the options through `mlflow run -P`
    params = {"num_samples": "60", "epochs": "3", "token_pos": "last", "unfreeze": "all", "targets": "live", "track_gradients": "true",
              "gradient_interval": "2", "track_activations": "true", "regression": "False", "output_dir": str(tmp_path / "out")}
    mlflow_run("introspection", params, experiment="introspection", env=clean_env(MLFLOW_TRACKING_URI=mlflow_server))
    client = MlflowClient(mlflow_server)
    run = client.search_runs([client.get_experiment_by_name("introspection").experiment_id])[0]
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    for key in ("val/acc", "test/acc", "drift/ks", "drift/entropy"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3], key
    assert "baseline/majority/test_acc" in run.data.metrics and "target/variance" in run.data.metrics
    dataset = pd.read_csv(client.download_artifacts(run_id, "dataset/activations.csv"))
    assert len(dataset) == 60 and dataset["text"].is_unique
    assert set(dataset["split"]) == {"train", "val", "test"} and dataset["bin"].between(0, 3).all()
    assert (dataset["layer"] == int(run.data.tags["innerlens.layer"])).all()
    gradients = json.loads(open(client.download_artifacts(run_id, "monitors/gradients.json")).read())
    assert gradients and {"embeddings", "blocks.0.attn", "blocks.3.mlp"} <= set(gradients[0]["norms"])
    activations = json.loads(open(client.download_artifacts(run_id, "monitors/activations.json")).read())
    assert [entry["epoch"] for entry in activations] == [1, 2, 3]
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {f"figures/{n}.png" for n in ("scan_scores", "target_histogram", "predictions", "learning_curves", "gradient_flow", "activation_drift")} <= figures
    assert (tmp_path / "out" / "dataset" / "activations.csv").exists()
    assert (tmp_path / "out" / ".innerlens-output").is_file()  # what a later --force-overwrite may replace


def test_metalign_through_mlflow_run(mlflow_server: str, mlflow_run: MlflowRun, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"synthetic_objects": "600", "sequence_length": "40", "eval_episodes": "96", "episodes_per_epoch": "1024",
              "max_epochs": "12", "d_model": "64", "n_layers": "3", "n_heads": "4", "d_mlp": "128", "cka_repeats": "10",
              "synthetic_participants": "8"}
    mlflow_run("metalign", params, experiment="metalign", env=clean_env(MLFLOW_TRACKING_URI=mlflow_server))
    client = MlflowClient(mlflow_server)
    run = client.search_runs([client.get_experiment_by_name("metalign").experiment_id])[0]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {f"figures/{name}.png" for name in ("cka_layers", "learning_curves", "learning_curves_by_dimension",
                                               "accuracy_by_dimension", "training")} <= figures
    assert {a.path for a in client.list_artifacts(run.info.run_id, "data")} >= {"data/backbone.npz", "data/reference.txt", "data/human.csv"}
    metrics = run.data.metrics
    positions = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/accuracy_by_position.csv"))
    # The held-out episodes can be learned in context (the logistic learner does: later trials beat early
    # ones); labels are balanced, so no label count gives them away.
    cognitive = positions[positions["learner"] == "cognitive"].set_index("trial")["p_correct"]
    assert cognitive.loc[31:].mean() > cognitive.loc[:10].mean() + 0.05
    first_trial = positions[positions["trial"] == 1].set_index("learner")["p_correct"]
    assert first_trial["meta_learner"] == pytest.approx(0.5, abs=0.05)  # nothing to go on yet
    assert first_trial["cognitive"] == pytest.approx(0.5, abs=1e-6)
    assert positions["trial"].max() == 40  # humans and models clipped to the same trials
    cka = pd.read_csv(client.download_artifacts(run.info.run_id, "tables/cka.csv"))
    # backbone, ridge map, then input + 3 blocks trained and at initialisation x all/heldout x linear/debiased
    assert len(cka) == (2 + 4 * 2) * 2 * 2
    assert set(cka["kind"]) == {"backbone", "ridge", "trained", "init"}
    assert {"input@init", "layer_2@init"} <= set(cka["layer"])
    for row in cka[cka["kind"] == "trained"].drop_duplicates(["layer", "subset", "method"]).itertuples():
        assert f"cka_{row.method}/{row.layer}/{row.subset}/beats_controls" in metrics
    assert (cka["low"] <= cka["high"]).all() and cka["value"].between(-0.2, 1.0).all()
    assert metrics["cka_linear/backbone/all"] == pytest.approx(
        cka.query("layer == 'backbone' and subset == 'all' and method == 'linear'")["value"].item())
    assert metrics["behaviour/nll/cognitive"] < metrics["behaviour/nll/chance"]

    # compare draws metalign's own figures from these runs' tables
    import mlflow

    from innerlens.drivers.compare import CompareConfig
    from innerlens.drivers.compare import run as compare

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    compare_id = compare(CompareConfig(experiments=("metalign",), family="metalign"), progress=False)
    drawn = {a.path for a in client.list_artifacts(compare_id, "figures")}
    assert {"figures/metalign_learning_curves.png", "figures/metalign_cka_flipped_label.png"} <= drawn


def test_generator_then_selector_through_mlflow_run(mlflow_server: str, mlflow_run: MlflowRun) -> None:
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_server)
    mlflow_run("generator", {"num_texts": "300", "max_steps": "40", "eval_every": "20", "batch_size": "16"}, experiment="selector", env=env)
    mlflow_run("selector", {"generator": "models:/innerlens-generator/latest", "max_epochs": "25", "num_examples": "2"}, experiment="selector", env=env)
    client = MlflowClient(mlflow_server)
    generator_version = max(int(v.version) for v in client.search_model_versions("name = 'innerlens-generator'"))
    selector_version = max(int(v.version) for v in client.search_model_versions("name = 'innerlens-selector'"))
    experiment = client.get_experiment_by_name("selector").experiment_id
    generator_run = client.search_runs([experiment], "tags.`innerlens.family` = 'generator'")[0]
    assert [m.step for m in client.get_metric_history(generator_run.info.run_id, "gns/b_simple")] == [20, 40]
    run = client.search_runs([experiment], "tags.`innerlens.family` = 'selector'")[0]
    assert run.data.tags["innerlens.generator_version"] == str(generator_version)
    # the session published the head the Plan released: logged under selector/, registered from this run
    assert run.data.tags["innerlens.registered_version"] == str(selector_version)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "selector")} == {"selector/architecture.json", "selector/head.pt"}
    assert client.get_model_version("innerlens-selector", str(selector_version)).run_id == run.info.run_id
    heatmaps = sorted(a.path for a in client.list_artifacts(run.info.run_id, "figures/heatmaps"))
    assert len(heatmaps) == 4  # two examples: PNG + weights array each
    assert all(f"_{generator_version}_selector_{selector_version}." in path for path in heatmaps)
    arrays = np.load(client.download_artifacts(run.info.run_id, [p for p in heatmaps if p.endswith(".npz")][0]))
    assert {"tokens", "h_select_h1", "h_select_h2"} <= set(arrays.files)
    assert "figures/evaluation.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    metrics = run.data.metrics
    assert metrics["test/auc_best"] > metrics["baseline/bow/test_auc"] + 0.15  # context beats bag of words
    assert metrics["test/ece_calibrated"] <= metrics["test/ece"] + 0.05


def test_tune_through_mlflow_run(mlflow_server: str, mlflow_run: MlflowRun, tmp_path: Path) -> None:
    params = {"family": "self_modeling", "n_trials": "6", "sampler": "random", "pruner": "median",
              "study_name": "e2e", "fixed": f"{TINY_SELF_MODELING} max_epochs=8"}
    mlflow_run("tune", params, experiment="tune", env=clean_env(MLFLOW_TRACKING_URI=mlflow_server, INNERLENS_HOME=str(tmp_path)))
    assert (tmp_path / "mlruns" / "optuna" / "journal.log").stat().st_size > 0  # the default journal storage
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tune").experiment_id
    parent = client.search_runs([experiment], "tags.`innerlens.family` = 'tune'")[0]
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 6
    assert all(r.data.tags["innerlens.study"] == "e2e" for r in children)
    states = pd.Series([r.info.status for r in children]).value_counts().to_dict()
    assert states.get("KILLED", 0) >= 1 and states.get("FINISHED", 0) >= 1  # pruned trials end KILLED
    assert parent.data.metrics["trials/pruned"] == states["KILLED"]
    assert set(states) <= {"FINISHED", "KILLED"}
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/optimization_history.png", "figures/slice.png", "figures/parallel_coordinate.png", "figures/study.html"} <= figures
    best_run = parent.data.tags["innerlens.best_run_id"]
    assert client.get_run(best_run).data.params["trial_number"] == str(int(parent.data.metrics["best/trial"]))
    name, version = parent.data.tags["innerlens.registered_version"].split("/")
    assert client.get_model_version(name, version).run_id == best_run
