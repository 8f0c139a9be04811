"""session.run: a family's run returns its result, nests under an explicit parent and calls the
driver's callbacks, with no hidden context."""
from __future__ import annotations

import torch
from mlflow.tracking import MlflowClient
from support import TINY_MODEL

from innerlens import session, tracking
from innerlens.configs.self_modeling import SelfModelingConfig

TINY = dict(**TINY_MODEL, max_epochs=3, measure_llc=False)


class Rounds:
    """A driver's callback: which rounds it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, state, metrics: dict[str, float], improved: bool) -> None:  # noqa: ANN001
        self.seen.append(state.step)

    def on_fit_end(self, state) -> None:  # noqa: ANN001
        pass


def test_a_run_returns_its_result_nests_under_its_parent_and_calls_the_drivers_callbacks(local_store: str) -> None:
    with tracking.start_run(SelfModelingConfig(variant="baseline", **TINY), variant="study", run_name="study") as parent:
        rounds = Rounds()
        context = tracking.RunContext(parent.run_id, {"innerlens.study": "s"}, {"trial_number": "7"})
        result = session.run("self_modeling", SelfModelingConfig(variant="middle_layer", **TINY), parent=context,
                             callbacks=[rounds], progress=False)
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id and run.data.tags["innerlens.study"] == "s"
    assert run.data.params["trial_number"] == "7"
    assert rounds.seen == [1, 2, 3]
    best_step = int(run.data.tags["innerlens.best_step"])
    logged = {key: MlflowClient().get_metric_history(result.run_id, key) for key in ("val/acc", "test/acc")}
    assert {key: next(m.value for m in history if m.step == best_step) for key, history in logged.items()} == {
        key: result.best_metrics[key] for key in logged}
    from innerlens.families.self_modeling import SelfModelingExperiment

    model = SelfModelingExperiment(SelfModelingConfig(variant="middle_layer", **TINY), torch.device("cpu")).model
    assert result.best_state is not None and set(result.best_state) == set(model.state_dict())
    assert set(result.history["step"]) == {1, 2, 3}


def test_a_password_in_an_option_is_masked_in_params_and_config_json(local_store: str) -> None:
    """Configs hold what the user gave; tracking masks URL passwords as it logs them (params, config.json)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from innerlens import tracking
    from innerlens.configs.tune import TuneConfig

    config = TuneConfig(storage="postgresql://innerlens:hunter2@db.example:5432/optuna")
    assert "hunter2" in config.to_json()  # the config itself is not altered
    mlflow.set_experiment("tests")
    with tracking.start_run(config, variant="tune") as tracker:
        run_id = tracker.run_id
    run = MlflowClient().get_run(run_id)
    assert run.data.params["storage"] == "postgresql://innerlens:***@db.example:5432/optuna"
    stored = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.json")
    assert "hunter2" not in stored and "innerlens:***@db.example" in stored
