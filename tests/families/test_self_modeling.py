"""self_modeling at the cost of training: the default regime on an unpicked seed, the vectorised sampler
against devinterp, and the measurement after generalisation on a local store."""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from innerlens.analysis.llc import estimate_llc
from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.families.self_modeling import SelfModelingExperiment


def test_default_regime_generalises_on_an_unpicked_seed() -> None:
    """The comparison's regime (every p^2 pair, weight decay 0.01, minibatch 64, its 100-epoch budget)
    on seed 7, which the pilot did not use: validation accuracy reaches 0.95 within the budget. Whether
    training collapses after memorising depends on the CPU's float kernels (3 collapses on one machine
    of this kind, none on another), so it is not asserted: each run records ``train/settled`` instead,
    and complexity contrasts report how many runs per arm settled. One thread, as a study's worker runs it."""
    config = SelfModelingConfig(variant="baseline", seed=7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiment = SelfModelingExperiment(config, torch.device("cpu"))
        val_acc = []
        for epoch in range(1, config.max_epochs + 1):  # within the budget; stops once it is reached
            experiment.train_round(epoch)
            val_acc.append(experiment.evaluate(epoch)["val/acc"])
            if val_acc[-1] >= 0.95:
                break
    finally:
        torch.set_num_threads(threads)
    assert max(val_acc) >= 0.95, val_acc


def test_the_vectorised_sampler_agrees_with_devinterp_on_a_transformer_and_leaves_it_untouched() -> None:
    import torch.nn.functional as F

    from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

    config = SelfModelingConfig(samples=400, p=23, n_layers=3, d_model=32, n_heads=4, d_mlp=64, variant="middle_layer")
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    x, y = experiment.data["train"]
    loss = lambda model, inputs, labels: F.cross_entropy(model(inputs), labels)  # noqa: E731
    before = experiment.model(x).detach()
    settings = replace(config.llc_settings, num_chains=4, num_draws=150, num_burnin=0, batch_size=64)
    vectorised = estimate_llc(experiment.model, x, y, loss, replace(settings, sampler="vectorised"), seed=0)
    assert torch.equal(experiment.model(x).detach(), before)  # sampled on a copy: the run's model is whole
    reference = estimate_llc(experiment.model, x, y, loss, replace(settings, sampler="devinterp"), seed=0)
    standard_error = math.hypot(vectorised.std, reference.std) / math.sqrt(settings.num_chains)
    assert abs(vectorised.mean - reference.mean) <= 4 * standard_error + 0.05 * abs(reference.mean), (vectorised, reference)


def test_the_run_is_measured_a_fixed_number_of_epochs_after_its_own_generalisation(local_store: str) -> None:
    """--llc-after-generalisation K: weight spread and each LLC estimator at (first epoch with val acc ≥ 0.95) + K,
    logged at that step, whatever the budget."""
    from mlflow.tracking import MlflowClient

    from innerlens import session

    config = SelfModelingConfig(model="mlp", task="digits", variant="last_layer", hidden=32, max_epochs=30, batch_size=32,
                                llc_after_generalisation=3, measure_llc=True, llc_chains=2, llc_draws=6, llc_burnin=2,
                                llc_at_best=False, device="cpu", checkpoint_interval=0.0)
    run_id = session.run("self_modeling", config, progress=False).run_id
    client = MlflowClient()
    reached = int(client.get_run(run_id).data.metrics["val/epoch_to_acc_0.95"])
    assert reached <= 27  # generalised within the budget, so the measurement point exists
    for key in ("llc/after_generalisation_mean", "llc/after_generalisation_mean_paper", "weights/std_after_generalisation"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [reached + 3], key


def test_a_run_ends_a_fixed_number_of_epochs_after_it_generalises_and_resumes_to_the_same_end(
        local_store: str, monkeypatch) -> None:
    """--end-after-generalisation G: the run's last epoch is (first epoch with val acc ≥ 0.95) + G, its final
    checkpoint is written there, and a crash after it generalised resumes to the same end with the same numbers
    (the epoch it generalised travels in the checkpoint, so the learning-rate fall is the same)."""
    import mlflow
    import pytest
    from mlflow.tracking import MlflowClient

    from innerlens import session, tracking

    config = SelfModelingConfig(model="mlp", task="digits", variant="last_layer", hidden=32, max_epochs=40, batch_size=32,
                                end_after_generalisation=5, lr_decay=0.6, measure_llc=False, device="cpu",
                                checkpoint_interval=0.0)
    # no timed checkpoints: the last one is written only because the run ended (a stop its own callback decides)
    straight = session.run("self_modeling", config.replace(checkpoint_interval=1e9), progress=False).run_id
    client = MlflowClient()
    reached = int(client.get_run(straight).data.metrics["val/epoch_to_acc_0.95"])
    steps = [m.step for m in client.get_metric_history(straight, "val/acc")]
    assert reached + 5 < 40 and steps == list(range(1, reached + 6))
    assert tracking.load_checkpoint(straight)["epoch"] == reached + 5

    real_evaluate = SelfModelingExperiment.evaluate

    def crash_after_generalising(self: SelfModelingExperiment, epoch: int) -> dict[str, float]:
        if epoch == reached + 3:
            raise RuntimeError("simulated crash")
        return real_evaluate(self, epoch)

    monkeypatch.setattr(SelfModelingExperiment, "evaluate", crash_after_generalising)
    with pytest.raises(RuntimeError, match="simulated crash"):
        session.run("self_modeling", config, progress=False)
    crashed = mlflow.search_runs(order_by=["attributes.start_time DESC"]).iloc[0]["run_id"]
    monkeypatch.setattr(SelfModelingExperiment, "evaluate", real_evaluate)
    session.run("self_modeling", config.replace(resume=crashed), progress=False)
    assert [m.step for m in client.get_metric_history(crashed, "val/acc")] == steps
    final, resumed = client.get_run(straight).data.metrics, client.get_run(crashed).data.metrics
    for key in ("train/loss_final", "weights/std_final", "test/acc_final", "train/settled"):
        assert resumed[key] == pytest.approx(final[key], abs=1e-6), key
