"""A crashed run ends FAILED with its last checkpoint; --resume finishes it in the same run
with the same numbers an uninterrupted run gets."""
from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from innerlens import tracking
from innerlens.families import self_modeling
from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

from conftest import TINY

CONFIG = SelfModelingConfig.from_strings(
    {**TINY, "max_epochs": "4", "llc_every": "0", "patience": "0", "checkpoint_interval": "0"}
)


def _final(run_id: str) -> dict[str, float]:
    return MlflowClient().get_run(run_id).data.metrics


def test_crash_then_resume_matches_uninterrupted(local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = self_modeling.run(CONFIG, progress=False)

    real_evaluate = SelfModelingExperiment.evaluate

    def crash_at_epoch_3(self: SelfModelingExperiment, epoch: int) -> dict[str, float]:
        if epoch == 3:
            raise RuntimeError("simulated crash")
        return real_evaluate(self, epoch)

    monkeypatch.setattr(SelfModelingExperiment, "evaluate", crash_at_epoch_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        self_modeling.run(CONFIG, progress=False)
    crashed = mlflow.search_runs(order_by=["attributes.start_time DESC"]).iloc[0]
    crashed_id = crashed["run_id"]
    assert crashed["status"] == "FAILED"
    assert tracking.load_checkpoint(crashed_id)["epoch"] == 2

    monkeypatch.setattr(SelfModelingExperiment, "evaluate", real_evaluate)
    resumed = self_modeling.run(CONFIG.replace(resume=crashed_id), progress=False)
    assert resumed == crashed_id
    client = MlflowClient()
    assert client.get_run(crashed_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(crashed_id, "val/acc")] == [1, 2, 3, 4]
    for key, value in _final(straight).items():
        assert _final(crashed_id)[key] == pytest.approx(value, abs=1e-6), key
    best = tracking.load_checkpoint(crashed_id, "best")
    straight_best = tracking.load_checkpoint(straight, "best")
    assert best["epoch"] == straight_best["epoch"]
    assert all(torch.equal(best["model"][k], straight_best["model"][k]) for k in best["model"])
