"""introspection's parts: targets, heads, losses, the scanner and the refitted probe (no store)."""
from __future__ import annotations

import pytest
import torch
from support import ROOT

from innerlens.analysis.neurons import RunningStats, combined_score, scan
from innerlens.cli import main
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.families.introspection_experiment import IntrospectionExperiment
from innerlens.models.hooks import activation as hook_name
from innerlens.models.introspection_head import at_position
from innerlens.models.loading import ModelCache

MODELS = ROOT / "mlruns" / "models"


CPU = torch.device("cpu")


def test_running_stats_equal_direct_computation() -> None:
    data = torch.tensor([[1.0, 10.0], [3.0, -2.0], [5.0, 4.0], [7.0, 0.0], [-1.0, 8.0]])
    stats = RunningStats()
    for batch in (data[:2], data[2:3], data[3:]):
        stats.update(batch)
    assert torch.allclose(stats.variance, data.double().var(0, unbiased=False))
    assert stats.range.tolist() == [8.0, 12.0]
    # hand-checked: variances 8 and 19.2, ranges 8 and 12 -> sqrt(8/19.2 * 8/12) and sqrt(1 * 1)
    score = combined_score(torch.tensor([8.0, 19.2]), torch.tensor([8.0, 12.0]))
    assert score.tolist() == pytest.approx([(8 / 19.2 * 8 / 12) ** 0.5, 1.0])


@pytest.mark.parametrize("targets", ["fixed", "live"])
def test_live_targets_follow_the_model(targets: str) -> None:
    config = IntrospectionConfig(num_samples=40, layer=1, neuron=5, unfreeze="all", targets=targets)
    experiment = IntrospectionExperiment(config, CPU, ModelCache(MODELS))
    rows = experiment.splits.val
    before = experiment.labels_for(rows, experiment.predict(rows)[1])
    with torch.no_grad():  # change the model under the target neuron
        for parameter in experiment.model.bridge.blocks[0].parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    after = experiment.labels_for(rows, experiment.predict(rows)[1])
    assert torch.equal(before, after) == (targets == "fixed")


def test_the_head_reads_a_layer_strictly_below_the_target_unless_a_readout_is_asked_for() -> None:
    from innerlens.errors import ConfigError
    from innerlens.families.introspection_setup import feature_layer_for

    assert feature_layer_for(IntrospectionConfig(), 2) == 1
    assert feature_layer_for(IntrospectionConfig(), 0) == -1  # the embeddings
    with pytest.raises(ConfigError, match="--allow-readout"):
        feature_layer_for(IntrospectionConfig(feature_layer=3), 3)
    assert feature_layer_for(IntrospectionConfig(feature_layer=3, allow_readout=True), 2) == 3
    experiment = IntrospectionExperiment(IntrospectionConfig(num_samples=40, layer=2, neuron=5), CPU, ModelCache(MODELS))
    assert experiment.model.feature_hook == "blocks.1.hook_resid_post"


@pytest.mark.parametrize("targets", ["live", "live_gradient"])
def test_only_non_detached_live_targets_send_gradient_into_the_target_layer(targets: str) -> None:
    config = IntrospectionConfig(num_samples=40, layer=2, neuron=5, unfreeze="all", targets=targets)
    experiment = IntrospectionExperiment(config, CPU, ModelCache(MODELS))
    rows = experiment.splits.train[:8]
    output, live = experiment.model(experiment.ids[rows], experiment.last[rows], experiment.neuron)
    experiment.loss(output, experiment.labels_for(rows, live)).backward()
    target_block = experiment.model.bridge.blocks[2].mlp
    gradient = sum(float(p.grad.abs().sum()) for p in target_block.parameters() if p.grad is not None)
    assert (gradient > 0) == (targets == "live_gradient")
    below = sum(float(p.grad.abs().sum()) for p in experiment.model.bridge.blocks[0].parameters() if p.grad is not None)
    assert below > 0  # the features' layers train either way


def test_the_normalised_loss_does_not_reward_shrinking_the_target() -> None:
    from innerlens.analysis.probes import normalized_mse

    generator = torch.Generator().manual_seed(0)
    target = torch.randn(64, generator=generator)
    prediction = target + 0.3 * torch.randn(64, generator=generator)
    for scale in (0.01, 0.5, 7.0):
        assert float(normalized_mse(scale * prediction, scale * target)) == pytest.approx(float(normalized_mse(prediction, target)), rel=1e-5)
    plain = torch.nn.functional.mse_loss
    assert float(plain(0.01 * prediction, 0.01 * target)) < 1e-3 * float(plain(prediction, target))  # what MSE would reward


def test_the_scanner_sees_training_texts_only() -> None:
    config = IntrospectionConfig(num_samples=60, layer_type="mlp_out")
    experiment = IntrospectionExperiment(config, CPU, ModelCache(MODELS))
    bridge, train = experiment.loaded.bridge, experiment.splits.train
    layers = list(range(experiment.loaded.n_layers))
    on_train = scan(bridge, experiment.ids[train], experiment.last[train], layer_type="mlp_out", layers=layers,
                    names=[hook_name("mlp_out", layer) for layer in layers], position=None, select=at_position)
    on_all = scan(bridge, experiment.ids, experiment.last, layer_type="mlp_out", layers=layers,
                  names=[hook_name("mlp_out", layer) for layer in layers], position=None, select=at_position)
    assert torch.allclose(experiment.scan.variance, on_train.variance)
    assert not torch.allclose(experiment.scan.variance, on_all.variance)  # the held-out texts would change the choice's scores


def test_a_collapsed_target_reports_a_flag_not_an_r2() -> None:
    experiment = IntrospectionExperiment(IntrospectionConfig(num_samples=40, layer=2, neuron=5), CPU, ModelCache(MODELS))
    original = experiment.targets.values[experiment.splits.val]
    flat = torch.full_like(original, float(original.mean())) + 1e-4 * torch.randn_like(original)
    collapsed = experiment.floored_regression_metrics("val", flat, flat, original)
    assert collapsed == {"val/variance_collapsed": 1.0, "val/r2_floored": -1.0}
    healthy = experiment.floored_regression_metrics("val", original, original, original)
    assert healthy["val/variance_collapsed"] == 0.0 and healthy["val/r2"] == pytest.approx(1.0)


def test_seed_spellings_show_in_help_and_a_bad_legacy_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(["introspection", "--help"])
    shown = capsys.readouterr().out
    assert "--token-position, --token-pos" in shown and "--max-epochs, --epochs" in shown
    assert "--regression false = --task classification" in " ".join(shown.split())
    with pytest.raises(SystemExit) as exit_info:
        main(["introspection", "--regression", "maybe"])
    assert exit_info.value.code == 2
    assert "--regression: expected one of 'true', 'false', got 'maybe'" in capsys.readouterr().err


def test_the_refitted_probe_reads_the_network_and_targets_as_they_are_now() -> None:
    """Untouched network: the refitted probe is the original probe. Once the network moves under a live
    target, the refitted probe scores the new features against the new neuron, which the original cannot."""
    config = IntrospectionConfig(num_samples=80, layer=2, neuron=5, targets="live")
    experiment = IntrospectionExperiment(config, CPU, ModelCache(MODELS))
    original = experiment.baselines(None)
    refit = experiment.refit_probe()
    for split in ("val", "test"):
        assert refit[f"baseline/refit_probe/{split}_r2"] == pytest.approx(original[f"baseline/probe/{split}_r2"], abs=1e-6)
    with torch.no_grad():
        for parameter in experiment.model.bridge.blocks[0].parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    moved = experiment.refit_probe()
    assert moved["baseline/refit_probe/test_r2"] != pytest.approx(refit["baseline/refit_probe/test_r2"], abs=1e-3)


def test_attention_share_is_zero_when_the_block_writes_nothing_through_attention() -> None:
    """The share of the target that arrives through its own block's attention: some on the trained model;
    exactly none once that attention's output projection is zero (its output is then the same for every
    text, so mean-ablating it at the token changes nothing)."""
    experiment = IntrospectionExperiment(IntrospectionConfig(num_samples=80, layer=2, neuron=5), CPU, ModelCache(MODELS))
    assert 0.0 < experiment.attention_share() < 1.0
    with torch.no_grad():
        for name, parameter in experiment.loaded.bridge.blocks[2].attn.named_parameters():
            if name.startswith("o."):
                parameter.zero_()
    assert experiment.attention_share() == pytest.approx(0.0, abs=1e-10)
