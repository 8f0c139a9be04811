"""Grokking sweeps: nested runs per (value, seed), summaries that match the runs, the sweep figures."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from innerlens import tracking
from innerlens.drivers.grokking_sweep import PHASE_STEPS, GrokkingSweepConfig, sweep, sweep_results
from innerlens.errors import ConfigError

TINY_SWEEP = dict(
    p=23, train_fraction=0.7, val_fraction=0.15, test_fraction=0.15, lr=3e-3, d_model=32, n_heads=4, d_head=8,
    d_mlp=64, max_steps=300, eval_every=50, analysis_every=150, snapshots=3, dashboard=False,
    generalization_threshold=0.2,
)


def test_weight_decay_sweep_is_nested_and_summarised(local_store: str) -> None:
    config = GrokkingSweepConfig(**TINY_SWEEP, sweep="weight_decay", values=(0.1, 1.0), seeds=(0, 1))
    parent_id = sweep(config, progress=False)
    client = MlflowClient()
    parent = client.get_run(parent_id)
    assert parent.data.tags["innerlens.family"] == "grokking_sweep"
    history, summary = sweep_results(parent_id, "weight_decay")
    assert sorted(zip(summary["weight_decay"], summary["seed"])) == [(0.1, "0"), (0.1, "1"), (1.0, "0"), (1.0, "1")]
    for row in summary.itertuples():
        child = client.get_run(row.run_id)
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert float(child.data.params["weight_decay"]) == row.weight_decay
        # the summary's step, checked against the run's own val/acc curve (not against the metric it was read from)
        curve = sorted((m.step, m.value) for m in client.get_metric_history(row.run_id, "val/acc"))
        first = next((step for step, value in curve if value >= TINY_SWEEP["generalization_threshold"]), None)
        assert first is not None and row.generalization_step == first
        assert row.change_points == child.data.metrics["grok/change_points"]  # the per-run proxies ride along
    assert set(history["weight_decay"]) == {0.1, 1.0}
    figures = {a.path for a in client.list_artifacts(parent_id, "figures")}
    assert figures == {"figures/seed_bands.png", "figures/time_to_generalize.png"}
    logged = pd.read_csv(client.download_artifacts(parent_id, "sweep_summary.csv"))
    assert len(logged) == 4
    phases = pd.read_csv(client.download_artifacts(parent_id, "tables/phase_summary.csv"))
    assert len(phases) == 2 * len(PHASE_STEPS) and set(phases["n"]) == {2}
    for row in phases.itertuples():  # reached = the runs whose logged step is not the -1 sentinel
        runs = summary[summary["weight_decay"] == row.weight_decay]
        assert row.events == (runs[row.phase] >= 0).sum()
        assert (row.estimate == "mean") == bool((runs[row.phase] >= 0).all())


def test_a_sweep_rerun_under_its_name_continues_it_and_refuses_other_options(local_store: str) -> None:
    config = GrokkingSweepConfig(**{**TINY_SWEEP, "max_steps": 100, "analysis_every": 0}, seeds=(0, 1), study_name="wd-seeds")
    first = sweep(config, progress=False)
    trained = {run.info.run_id for run in tracking.children(first)}
    again = sweep(config.replace(workers=1), progress=False)  # where it runs may change
    assert again == first and {run.info.run_id for run in tracking.children(again)} == trained  # nothing trained twice
    with pytest.raises(ConfigError, match="--lr"):
        sweep(config.replace(lr=1e-2), progress=False)
    # A task that never started (the study was stopped first): continuing trains it afresh, not by
    # resuming the parent run the continued study's own --resume names.
    never = next(run for run in tracking.children(first) if run.data.tags[tracking.TAG_TASK] == "add-s1")
    MlflowClient().delete_run(never.info.run_id)
    assert sweep(config, progress=False) == first
    children = {run.data.tags[tracking.TAG_TASK]: run for run in tracking.children(first)}
    assert sorted(children) == ["add-s0", "add-s1"] and children["add-s1"].info.status == "FINISHED"
    assert children["add-s1"].info.run_id not in trained
    assert MlflowClient().get_run(first).data.tags["innerlens.failed_runs"] == "0"
    assert len(MlflowClient().search_runs([MlflowClient().get_run(first).info.experiment_id],
                                          filter_string="attributes.run_name = 'wd-seeds'")) == 1
