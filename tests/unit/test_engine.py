"""The engine selects on validation only, stops on patience or target, and resumes exactly."""
from __future__ import annotations

import io

import pytest
import torch

from innerlens.engine import EngineState, FlatAdamW, Selection, fit, restore, training_state


class ScriptedExperiment:
    """A tiny real model whose reported val/test accuracies follow a script.

    The script makes test prefer a different epoch than validation, so any selection that
    peeked at test would pick the wrong epoch.
    """

    def __init__(self, val: list[float], test: list[float], flat: bool = False) -> None:
        self.val, self.test = val, test
        # Dropout and AdamW: a resume must restore the torch RNG and the optimizer's moments to match.
        self.model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.optimizer = (FlatAdamW(self.model, torch.device("cpu"), lr=0.1) if flat else
                          torch.optim.AdamW(self.model.parameters(), lr=0.1))
        self.generator = torch.Generator().manual_seed(0)

    def train_round(self, epoch: int) -> dict[str, float]:
        x = torch.randn(8, 2, generator=self.generator)
        loss = self.model(x).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"train/loss": loss.item()}

    def evaluate(self, epoch: int) -> dict[str, float]:
        return {"val/acc": self.val[epoch - 1], "test/acc": self.test[epoch - 1]}


class Recorder:
    def __init__(self) -> None:
        self.improved: list[int] = []
        self.ended = False

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        if improved:
            self.improved.append(state.epoch)

    def on_fit_end(self, state: EngineState) -> None:
        self.ended = True


VAL = [0.2, 0.5, 0.7, 0.6, 0.65, 0.69, 0.68, 0.9]
TEST = [0.2, 0.5, 0.6, 0.95, 0.6, 0.6, 0.6, 0.6]


def test_early_stopping_picks_the_validation_optimum() -> None:
    recorder = Recorder()
    state = fit(
        ScriptedExperiment(VAL, TEST), max_epochs=8, selection=Selection(patience=3), callbacks=[recorder], progress=False
    ).state
    assert state.best_epoch == 3 and state.best_value == 0.7  # test's best (epoch 4) is ignored
    assert state.epoch == 6 and "no val/acc improvement" in state.stop_reason
    assert recorder.improved == [1, 2, 3] and recorder.ended


def test_without_patience_runs_to_max_epochs() -> None:
    state = fit(ScriptedExperiment(VAL, TEST), max_epochs=8, selection=Selection(patience=0), callbacks=[], progress=False).state
    assert state.epoch == 8 and state.best_epoch == 8 and state.stop_reason == "max_epochs"


def test_target_accuracy_reads_validation_unless_test_is_named() -> None:
    on_val = fit(ScriptedExperiment(VAL, TEST), max_epochs=8, selection=Selection(patience=0, target_accuracy=0.9), callbacks=[], progress=False).state
    assert on_val.epoch == 8
    on_test = fit(
        ScriptedExperiment(VAL, TEST),
        max_epochs=8,
        selection=Selection(patience=0, target_accuracy=0.9, target_split="test"),
        callbacks=[],
        progress=False,
    ).state
    assert on_test.epoch == 4 and "test/acc" in on_test.stop_reason


@pytest.mark.parametrize("flat", [False, True], ids=["adamw", "flat_adamw"])
def test_resume_from_a_checkpoint_matches_an_uninterrupted_fit(flat: bool) -> None:
    torch.manual_seed(0)
    straight = ScriptedExperiment(VAL, TEST, flat)
    fit(straight, max_epochs=6, selection=Selection(patience=0), callbacks=[], progress=False)

    torch.manual_seed(0)
    first = ScriptedExperiment(VAL, TEST, flat)
    state = fit(first, max_epochs=3, selection=Selection(patience=0), callbacks=[], progress=False).state
    buffer = io.BytesIO()
    torch.save(training_state(first, state), buffer)  # the way a checkpoint travels: file, then a safe load
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert checkpoint["optimizer"]["state"]  # AdamW's moments are in it
    state.stop_reason = checkpoint["engine"]["stop_reason"] = ""
    torch.manual_seed(12345)  # the process that resumes starts from another RNG state

    second = ScriptedExperiment(VAL, TEST, flat)
    resumed = fit(second, max_epochs=6, selection=Selection(patience=0), callbacks=[], state=restore(second, checkpoint), progress=False).state
    assert resumed.epoch == 6 and len(resumed.history) == 6
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


class WeightsAtImprovement(Recorder):
    """Records the model's weights whenever validation improves."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        if improved:
            self.weights[state.epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}


def test_fit_returns_the_weights_and_metrics_of_the_validation_best_epoch() -> None:
    torch.manual_seed(0)
    experiment = ScriptedExperiment(VAL, TEST)
    recorder = WeightsAtImprovement(experiment.model)
    result = fit(experiment, max_epochs=8, selection=Selection(patience=3), callbacks=[recorder], progress=False)
    assert result.state.best_epoch == 3 and result.state.epoch == 6
    assert result.best_metrics["val/acc"] == 0.7 and result.best_metrics["test/acc"] == 0.6
    assert result.best_state is not None
    for key, value in recorder.weights[3].items():
        assert torch.equal(result.best_state[key], value), key
    assert any(not torch.equal(result.best_state[k], v) for k, v in experiment.model.state_dict().items())


def _two_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LayerNorm(5), torch.nn.ReLU(), torch.nn.Linear(5, 2))


def test_flat_adamw_steps_exactly_as_adamw_over_the_separate_tensors() -> None:
    plain_model, flat_model = _two_layers(), _two_layers()
    plain = torch.optim.AdamW(plain_model.parameters(), lr=0.05, weight_decay=0.1, foreach=True)
    flat = FlatAdamW(flat_model, torch.device("cpu"), lr=0.05, weight_decay=0.1)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for model, optimizer in ((plain_model, plain), (flat_model, flat)):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
    moments = flat.moments()
    for (name, a), b in zip(plain_model.named_parameters(), flat_model.parameters()):
        assert torch.equal(a, b), name
        assert torch.equal(plain.state[a]["exp_avg_sq"], moments[name]["exp_avg_sq"]), name
    assert not torch.equal(plain_model[0].weight, _two_layers()[0].weight)  # it trained


def test_flat_adamw_refuses_to_step_once_a_parameter_or_gradient_left_its_buffer() -> None:
    model = _two_layers()
    optimizer = FlatAdamW(model, torch.device("cpu"), lr=0.05)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # in place: fine
    model.zero_grad(set_to_none=True)  # the gradient views are gone: autograd would fill new tensors
    model(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="left FlatAdamW's buffer"):
        optimizer.step()
    model = _two_layers()
    optimizer = FlatAdamW(model, torch.device("cpu"), lr=0.05)
    model[3].weight.data = model[3].weight.data.clone()  # what .to(other device) does
    with pytest.raises(RuntimeError, match="left FlatAdamW's buffer"):
        optimizer.step()


@pytest.mark.parametrize("how", ["attribute swap", "load_state_dict(assign=True)"])
def test_flat_adamw_refuses_to_step_a_module_whose_parameter_was_replaced(how: str) -> None:
    model = _two_layers()
    optimizer = FlatAdamW(model, torch.device("cpu"), lr=0.05)
    if how == "attribute swap":
        model[0].weight = torch.nn.Parameter(model[0].weight.detach().clone())
    else:
        model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    model(torch.ones(1, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="was replaced"):
        optimizer.step()


def test_lr_decay_holds_then_falls_linearly_to_zero_over_the_last_fraction() -> None:
    from innerlens.engine import decayed_lr_factor

    factors = [decayed_lr_factor(epoch, 8, 0.25) for epoch in range(1, 9)]
    assert factors[:6] == [1.0] * 6  # the first three quarters: constant
    assert factors[6] == pytest.approx(0.75) and factors[7] == pytest.approx(0.25)  # midpoints of the last two epochs
    assert [decayed_lr_factor(epoch, 8, 0.0) for epoch in (1, 8)] == [1.0, 1.0]
