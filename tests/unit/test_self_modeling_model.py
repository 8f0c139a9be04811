"""self_modeling's model and data: self-model heads, targets, variants, splits and determinism (no store)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from innerlens.configs.self_modeling import VARIANTS, SelfModelingConfig
from innerlens.families.self_modeling import SelfModelingExperiment, self_model_layers

SMALL = dict(samples=300, p=23, n_layers=4, d_model=32, n_heads=4, d_mlp=64, batch_size=64, llc_every=0)


def test_default_depth_separates_first_middle_and_last() -> None:
    n = SelfModelingConfig().n_layers
    first, middle, last = (self_model_layers(v, n)[0] for v in ("first_layer", "middle_layer", "last_layer"))
    assert len({first, middle, last}) == 3
    assert self_model_layers("all_layers", n) == list(range(n)) and self_model_layers("baseline", n) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_self_model_outputs_have_activation_shapes(variant: str) -> None:
    experiment = SelfModelingExperiment(SelfModelingConfig(variant=variant, **SMALL), torch.device("cpu"))
    x, y = experiment.data["train"]
    logits, pairs = experiment.model.forward_with_self_model(x[:7])
    assert logits.shape == (7, 23)
    extra = {"input_control": ["input"], "paper_wiring": ["unembed_input"]}.get(variant, [])
    expected = self_model_layers(variant, 4) + extra
    assert list(pairs) == expected
    for prediction, target in pairs.values():
        assert prediction.shape == target.shape == (7, 32)  # the control's output has a self-model head's shape
        assert not target.requires_grad  # detached by default
    metrics = experiment.train_round(1)
    keys = {"input": "aux/input/loss", "unembed_input": "selfmodel/unembed_input/loss"}
    assert sorted(k for k in metrics if k.startswith(("selfmodel/", "aux/"))) == sorted(
        keys.get(layer, f"selfmodel/layer_{layer}/loss") for layer in expected)


def test_the_paper_wiring_predicts_the_unembeddings_own_detached_input() -> None:
    """Extra unembedding outputs: a linear map of ``unembed.hook_in`` whose target is that same input."""
    experiment = SelfModelingExperiment(SelfModelingConfig(variant="paper_wiring", **SMALL), torch.device("cpu"))
    model, x = experiment.model, experiment.data["val"][0][:5]
    _, pairs = model.forward_with_self_model(x)
    prediction, target = pairs["unembed_input"]
    _, cache = model.transformer.run_with_cache(x, names_filter=lambda n: n == "unembed.hook_in")
    final = cache["unembed.hook_in"][:, -1]
    assert torch.allclose(target, final, atol=1e-6) and not target.requires_grad
    head = model.heads["unembed_input"]
    assert torch.allclose(prediction, final @ head.weight.T + head.bias, atol=1e-5)
    prediction.pow(2).sum().backward()  # the gradient reaches the network only through the prediction
    assert model.transformer.original_model.tok_embed.weight.grad.abs().sum() > 0


def test_the_paper_wiring_is_refused_for_the_mlp_in_one_line() -> None:
    from innerlens.errors import ConfigError

    with pytest.raises(ConfigError, match="for --model mlp it is last_layer"):
        SelfModelingConfig(variant="paper_wiring", model="mlp", task="digits", hidden=16, samples=300)


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_the_input_control_regresses_a_fixed_projection_of_the_input_not_the_network(model: str) -> None:
    import torch.nn.functional as F

    options = SMALL if model == "transformer" else {"model": "mlp", "task": "digits", "hidden": 16, "samples": 300}
    experiment = SelfModelingExperiment(SelfModelingConfig(variant="input_control", **options), torch.device("cpu"))
    x = experiment.data["train"][0][:5]
    _, before = experiment.model.forward_with_self_model(x)
    experiment.train_round(1)  # the weights move; the control's target must not
    _, after = experiment.model.forward_with_self_model(x)
    assert torch.equal(before["input"][1], after["input"][1])
    projection = experiment.model.input_projection
    assert not projection.requires_grad and "input_projection" in experiment.model.state_dict()
    inputs = F.one_hot(x, projection.shape[0] // x.shape[1]).flatten(1).float() if model == "transformer" else x
    assert torch.allclose(after["input"][1], inputs @ projection, atol=1e-6)


def test_targets_carry_gradient_with_no_detach() -> None:
    experiment = SelfModelingExperiment(SelfModelingConfig(variant="first_layer", detach_target=False, **SMALL), torch.device("cpu"))
    _, pairs = experiment.model.forward_with_self_model(experiment.data["train"][0][:4])
    assert pairs[0][1].requires_grad


def test_target_is_the_residual_stream_the_hook_reports() -> None:
    experiment = SelfModelingExperiment(SelfModelingConfig(variant="middle_layer", **SMALL), torch.device("cpu"))
    x = experiment.data["val"][0][:5]
    _, pairs = experiment.model.forward_with_self_model(x)
    _, cache = experiment.model.transformer.run_with_cache(x, names_filter=lambda n: n == "blocks.2.hook_resid_post")
    assert torch.allclose(pairs[2][1], cache["blocks.2.hook_resid_post"][:, -1], atol=1e-6)


def test_same_seed_same_metrics_on_cpu() -> None:
    runs = []
    for _ in range(2):
        experiment = SelfModelingExperiment(SelfModelingConfig(variant="all_layers", **SMALL), torch.device("cpu"))
        runs.append([{**experiment.train_round(e), **experiment.evaluate(e)} for e in (1, 2)])
    assert runs[0] == runs[1]


def test_splits_are_disjoint_examples() -> None:
    experiment = SelfModelingExperiment(SelfModelingConfig(**SMALL), torch.device("cpu"))
    rows = {name: {tuple(r.tolist()) for r in x} for name, (x, _) in experiment.data.items()}
    assert not (rows["train"] & rows["val"]) and not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])
    assert sum(len(r) for r in rows.values()) == 300


def test_plain_forward_equals_the_hooked_forward_values_and_gradients() -> None:
    config = SelfModelingConfig(variant="all_layers", **SMALL)
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    net, x = experiment.model, experiment.data["train"][0][:16]
    assert net.plain
    plain_logits, plain_pairs = net.forward_with_self_model(x)
    hooked_logits, final, targets = net._hooked(x, net.layers)
    assert torch.allclose(plain_logits, hooked_logits, atol=1e-5)
    for layer, (prediction, target) in plain_pairs.items():
        assert torch.allclose(target, targets[layer], atol=1e-5)
        assert torch.allclose(prediction, net.heads[str(layer)](final), atol=1e-5)
    grads = []
    for logits in (net.forward_with_self_model(x)[0], net._hooked(x, net.layers)[0]):
        net.zero_grad()
        logits.logsumexp(-1).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.transformer.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_digits_are_patch_tokens_read_at_the_last_position() -> None:
    from innerlens.data.catalog import DIGITS_EXAMPLES
    from innerlens.data.tasks import digit_patches

    task = digit_patches(None, seed=0)
    assert task.x.shape == (DIGITS_EXAMPLES, 17) and task.num_classes == 10 and task.vocab_size == 17
    assert int(task.x[:, :-1].max()) < 16 and bool((task.x[:, -1] == 16).all())
    assert sorted(task.y.unique().tolist()) == list(range(10))
    assert len(digit_patches(100, seed=1).y) == 100


def weighted_share(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """‖w g_aux‖ / (‖g_task‖ + ‖w g_aux‖) at the model's current weight, computed here from scratch."""
    import torch.nn.functional as F

    from innerlens.families.self_modeling_training import self_model_loss

    logits, pairs = model.forward_with_self_model(x)
    parameters = list(model.parameters())

    def norm(loss: torch.Tensor) -> float:
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        return float(sum(g.pow(2).sum() for g in grads if g is not None) ** 0.5)

    task = norm(F.cross_entropy(logits, y))
    aux = model.aux_weight.item() * norm(torch.stack([self_model_loss("mse", p, t) for p, t in pairs.values()]).mean())
    return aux / (task + aux)


def test_grad_share_matching_sets_the_weight_that_gives_the_share_and_checkpoints_carry_it() -> None:
    from innerlens.families.self_modeling_training import match_gradient_share

    config = SelfModelingConfig(variant="middle_layer", self_model_grad_share=0.3, self_model_weight=1e-4, **SMALL)
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    model = experiment.model
    x, y = (t[:64] for t in experiment.data["train"])
    for _ in range(12):  # halfway steps from 1e-4 converge on the fixed point of this minibatch
        match_gradient_share(model, config, x, y)
    assert weighted_share(model, x, y) == pytest.approx(0.3, abs=0.01)
    assert "aux_weight" in model.state_dict()  # resumed runs continue from the matched weight
    metrics = experiment.train_round(1)
    assert 0 < metrics["aux/grad_share_before"] < 1 and metrics["aux/weight"] > 0


def test_the_first_match_is_not_smoothed_towards_the_starting_guess() -> None:
    from innerlens.families.self_modeling_training import match_gradient_share

    config = SelfModelingConfig(variant="middle_layer", self_model_grad_share=0.3, self_model_weight=1e-4, **SMALL)
    smoothed, direct = (SelfModelingExperiment(config, torch.device("cpu")).model for _ in range(2))
    x, y = (t[:64] for t in SelfModelingExperiment(config, torch.device("cpu")).data["train"])
    match_gradient_share(smoothed, config, x, y)
    match_gradient_share(direct, config, x, y, smooth=False)
    assert weighted_share(direct, x, y) == pytest.approx(0.3, abs=0.01)  # one match lands on the share
    assert direct.aux_weight.item() == pytest.approx(2 * smoothed.aux_weight.item() - 1e-4, rel=1e-4)


def test_a_capped_match_sets_no_more_than_the_cap() -> None:
    from innerlens.families.self_modeling_training import match_gradient_share

    capped = SelfModelingConfig(variant="middle_layer", self_model_grad_share=0.3, self_model_max_weight=1e-3, **SMALL)
    free = dataclasses.replace(capped, self_model_max_weight=None)
    experiment = SelfModelingExperiment(capped, torch.device("cpu"))
    x, y = (t[:64] for t in experiment.data["train"])
    match_gradient_share(experiment.model, free, x, y, smooth=False)
    assert experiment.model.aux_weight.item() > 1e-3  # the share needs more than the cap here
    match_gradient_share(experiment.model, capped, x, y, smooth=False)
    assert experiment.model.aux_weight.item() == pytest.approx(1e-3)
    assert weighted_share(experiment.model, x, y) < 0.3


@pytest.mark.parametrize("model", ["transformer", "mlp"])
def test_relabelled_classes_train_the_same_network_with_other_rounding(model: str) -> None:
    """The rounding control for either model, under a matched gradient share (what --stack-seeds cannot
    stack): the epochs agree to float noise, the unembedding's rows are the permuted rows of the plain
    run's, and the weights are not bit-identical (another float path, not a copy)."""
    from innerlens.families.self_modeling import relabelling

    torch.set_num_threads(1)
    common = dict(variant="middle_layer", self_model_grad_share=0.3, self_model_weight=1e-2, seed=5)
    common |= SMALL if model == "transformer" else dict(model="mlp", task="digits", hidden=32, hidden_layers=3, batch_size=256)
    plain = SelfModelingExperiment(SelfModelingConfig(**common), torch.device("cpu"))
    relabelled = SelfModelingExperiment(SelfModelingConfig(**common, relabel_classes=True), torch.device("cpu"))
    classes = plain.model(plain.data["train"][0][:1]).shape[-1]
    order = relabelling(5, classes, torch.device("cpu"))
    assert not torch.equal(order, torch.arange(classes))
    x, y = plain.data["train"]
    assert torch.equal(relabelled.data["train"][0], x)
    assert torch.equal(order[relabelled.data["train"][1]], y)  # the new label names the same class
    for epoch in range(1, 4):
        a, b = plain.train_round(epoch), relabelled.train_round(epoch)
        for key in ("train/loss", "train/acc", "aux/weight"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    assert torch.allclose(relabelled.model(x)[:, torch.argsort(order)], plain.model(x), atol=1e-4)
    assert not torch.equal(relabelled.model(x)[:, torch.argsort(order)], plain.model(x))


def test_the_learning_rate_falls_over_the_last_fraction_of_the_epochs_after_generalising() -> None:
    """--end-after-generalisation 8 --lr-decay 0.5: constant until 4 epochs before the end, then a linear fall to
    zero ending at (epoch it generalised) + 8; before it generalises the end is --max-epochs."""
    from innerlens.errors import ConfigError

    config = SelfModelingConfig(model="mlp", task="digits", variant="baseline", hidden=8, max_epochs=50,
                                end_after_generalisation=8, lr_decay=0.5, device="cpu")
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    assert experiment.end_epoch() == 50 and experiment.lr_factor(20) == 1.0 and experiment.lr_factor(48) == 0.625
    experiment.model.generalised_at.fill_(12)
    assert experiment.end_epoch() == 20
    assert [experiment.lr_factor(epoch) for epoch in range(15, 21)] == [1.0, 1.0, 0.875, 0.625, 0.375, 0.125]
    experiment.model.generalised_at.fill_(45)  # generalised too late for the full 8: the cap ends it
    assert experiment.end_epoch() == 50
    with pytest.raises(ConfigError, match="--llc-after-generalisation 10 would measure after the run ends"):
        SelfModelingConfig(end_after_generalisation=5, llc_after_generalisation=10)
