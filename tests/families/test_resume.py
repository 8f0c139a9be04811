"""A crashed run ends FAILED with its last checkpoint; --resume finishes it in the same run
with the same numbers an uninterrupted run gets."""
from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from support import TINY

from innerlens import session, tracking
from innerlens.families.grokking import GrokkingConfig, GrokkingExperiment
from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

# (family, config, experiment class, logged steps): 4 evaluations each
FAMILIES = {
    "self_modeling": (
        "self_modeling",
        SelfModelingConfig.from_strings({**TINY, "max_epochs": "4", "llc_every": "0", "patience": "0", "checkpoint_interval": "0"}),
        SelfModelingExperiment,
        [1, 2, 3, 4],
    ),
    "grokking": (
        "grokking",
        GrokkingConfig(p=23, d_model=32, d_head=8, d_mlp=64, max_steps=80, eval_every=20, analysis_every=40,
                       snapshots=3, checkpoint_interval=0, dashboard=False),
        GrokkingExperiment,
        [20, 40, 60, 80],
    ),
}


def _final(run_id: str) -> dict[str, float]:
    return MlflowClient().get_run(run_id).data.metrics


@pytest.mark.parametrize("family", FAMILIES)
def test_crash_then_resume_matches_uninterrupted(family: str, local_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, config, experiment_class, steps = FAMILIES[family]
    straight = session.run(name, config, progress=False).run_id

    real_evaluate = experiment_class.evaluate

    def crash_at_round_3(self: object, round_index: int) -> dict[str, float]:
        if round_index == 3:
            raise RuntimeError("simulated crash")
        return real_evaluate(self, round_index)

    monkeypatch.setattr(experiment_class, "evaluate", crash_at_round_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        session.run(name, config, progress=False)
    crashed = mlflow.search_runs(order_by=["attributes.start_time DESC"]).iloc[0]
    crashed_id = crashed["run_id"]
    assert crashed["status"] == "FAILED"
    assert tracking.load_checkpoint(crashed_id)["epoch"] == 2

    monkeypatch.setattr(experiment_class, "evaluate", real_evaluate)
    resumed = session.run(name, config.replace(resume=crashed_id), progress=False).run_id
    assert resumed == crashed_id
    client = MlflowClient()
    assert client.get_run(crashed_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(crashed_id, "val/acc")] == steps
    for key, value in _final(straight).items():
        assert _final(crashed_id)[key] == pytest.approx(value, abs=1e-6), key
    best = tracking.load_checkpoint(crashed_id, "best")
    straight_best = tracking.load_checkpoint(straight, "best")
    assert best["epoch"] == straight_best["epoch"]
    assert all(torch.equal(best["model"][k], straight_best["model"][k]) for k in best["model"])
