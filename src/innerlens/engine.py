"""The generic training loop: epochs, validation-driven selection, callbacks, resume.

A family supplies an :class:`Experiment` (how to train one epoch and how to evaluate); the
engine decides when to stop and which epoch is best, always from validation metrics unless
the user explicitly asked for a test-split target. Callbacks do the side effects (logging,
checkpoints, analyses), so the loop itself stays one screen long.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from innerlens.flat_parameters import FlatParameters

if TYPE_CHECKING:
    import pandas as pd

SELECTION_METRIC = "val/acc"


class Experiment(Protocol):
    """What a family hands the engine."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # every random draw of the data pipeline comes from here

    def train_round(self, round_index: int) -> dict[str, float]:
        """Train until the next evaluation: one epoch, or ``eval_every`` steps for step-based families."""
        ...

    def evaluate(self, round_index: int) -> dict[str, float]: ...


@dataclass
class Selection:
    """How the engine chooses: the monitored (validation) metric, patience and an optional target."""

    monitor: str = SELECTION_METRIC
    mode: str = "max"  # "min" for losses
    patience: int = 10
    target_accuracy: float | None = None
    target_split: str = "val"

    def __post_init__(self) -> None:
        assert self.monitor.startswith("val/"), "selection must read validation metrics"
        assert self.mode in ("max", "min"), self.mode

    def score(self, metrics: dict[str, float]) -> float:
        """The monitored value, signed so that larger is better."""
        value = metrics[self.monitor]
        return value if self.mode == "max" else -value

    @property
    def target_key(self) -> str:
        return f"{self.target_split}/acc"


@dataclass
class EngineState:
    """Everything needed to continue a fit exactly where it stopped."""

    epoch: int = 0  # rounds done: an epoch, or ``steps_per_round`` optimisation steps for step-based families
    steps_per_round: int = 1
    best_value: float = -math.inf
    best_epoch: int = 0
    epochs_since_best: int = 0
    stop_reason: str = ""
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def step(self) -> int:
        """The x-axis every metric is logged against (``innerlens.step_unit`` says what it counts)."""
        return self.epoch * self.steps_per_round

    @property
    def best_step(self) -> int:
        return self.best_epoch * self.steps_per_round

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What a fit produced: its state (history, best step, why it stopped) and the model's weights at
    the best validation evaluation, kept in memory so that nothing has to read ``best.pt`` back.

    ``best_state`` is None only for a resumed fit whose best evaluation came before the resume.
    """

    state: EngineState
    best_state: dict[str, torch.Tensor] | None = None

    @property
    def best_metrics(self) -> dict[str, float]:
        """The evaluation at the validation-chosen step."""
        return next(entry for entry in self.state.history if int(entry["step"]) == self.state.best_step)


class Callback(Protocol):
    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None: ...

    def on_fit_end(self, state: EngineState) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from innerlens.errors import ConfigError

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: no MPS device is available here; use --device auto or cpu")
    return torch.device(name)


def adamw(parameters: Any, device: torch.device, **options: Any) -> torch.optim.AdamW:
    """AdamW applying each op to all tensors at once instead of one tensor after another (bench/adamw_kinds.py).

    CUDA gets the fused kernel. A CPU gets the foreach one (a median 1.14x a self-modeling epoch over the
    loop): the fused CPU kernel is no faster there and rounds a seed inside a stacked tensor
    differently from the same seed alone, and stacked seeds must train as they would unstacked
    (tests/families/test_seed_stack.py).
    """
    if device.type == "cuda":
        return torch.optim.AdamW(parameters, fused=True, **options)
    return torch.optim.AdamW(parameters, foreach=True, **options)


class FlatAdamW(torch.optim.AdamW):
    """AdamW over one contiguous buffer that every parameter of a module is a view into
    (:class:`~innerlens.flat_parameters.FlatParameters`): each of AdamW's ops runs once instead of once
    per weight tensor (bench/adamw_kinds.py), with AdamW's per-element arithmetic unchanged (tested).

    Every parameter must train with the same options (no frozen parts, no groups), and the module
    must not move its parameters afterwards (``.to(...)``): :meth:`step` refuses if one has moved.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device, **options: Any) -> None:
        names, parameters = zip(*module.named_parameters())
        assert all(p.requires_grad for p in parameters), "FlatAdamW trains every parameter"
        self.names, self.buffers, self.module = names, FlatParameters(parameters), module
        self.flat = torch.nn.Parameter(self.buffers.data)
        self.flat.grad = self.buffers.grad
        kind = {"fused": True} if device.type == "cuda" else {"foreach": True}
        super().__init__([self.flat], **kind, **options)

    def moments(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each named parameter's AdamW state: the shared step and views into the flat moments
        (zero before the first step, as AdamW starts them), for code that trains the weights elsewhere
        and writes them back (stacked seeds)."""
        state = self.state[self.flat]
        if not state:
            fused = bool(self.param_groups[0].get("fused"))
            state["step"] = torch.zeros((), dtype=torch.float32, device=self.flat.device if fused else "cpu")
            state["exp_avg"] = torch.zeros_like(self.flat)
            state["exp_avg_sq"] = torch.zeros_like(self.flat)
        first, second = self.buffers.slices(state["exp_avg"]), self.buffers.slices(state["exp_avg_sq"])
        return {name: {"step": state["step"], "exp_avg": a, "exp_avg_sq": b} for name, a, b in zip(self.names, first, second)}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """One fill of the shared gradient buffer (the views must stay; ``set_to_none`` is ignored)."""
        self.buffers.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        self.buffers.check_bound("FlatAdamW")
        current = list(self.module.parameters())
        if len(current) != len(self.buffers.views) or any(a is not b for a, b in zip(current, self.buffers.views)):
            raise RuntimeError("a parameter of the module was replaced after FlatAdamW was built (an attribute swap, "
                               "load_state_dict(assign=True)): the update would miss it")
        return super().step(closure)


def history_frame(history: list[dict[str, float]]) -> "pd.DataFrame":
    """Tidy (step, key, value) rows from the engine's per-epoch metric dicts."""
    import pandas as pd

    rows = [
        {"step": int(entry["step"]), "key": key, "value": float(value)}
        for entry in history
        for key, value in entry.items()
        if key != "step"
    ]
    return pd.DataFrame(rows, columns=["step", "key", "value"])


def decayed_lr_factor(epoch: int, max_epochs: int, decay_fraction: float) -> float:
    """The learning rate's multiplier in ``epoch`` (1-based): 1, then a linear fall to zero over the
    last ``decay_fraction`` of the budget (each epoch at its midpoint), so the final weights are where
    the optimiser stopped moving, not a snapshot of a constant-lr walk."""
    span = decay_fraction * max_epochs
    if span <= 0:
        return 1.0
    return min(1.0, max(0.0, (max_epochs - epoch + 0.5) / span))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def snapshot(value: Any) -> Any:
    """A copy of nested dicts/lists whose tensors no later optimiser step can change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


# What a checkpoint's keys mean; raised when they change, so a resume never misreads an older one.
CHECKPOINT_FORMAT = 2


def check_checkpoint_format(checkpoint: dict[str, Any], run_id: str) -> None:
    """Refuse, in one line, a checkpoint written in another format (format 1 had no version)."""
    written = checkpoint.get("format", 1)
    if written != CHECKPOINT_FORMAT:
        from innerlens.errors import ConfigError

        raise ConfigError(f"--resume {run_id}: its checkpoint is format {written}, this innerlens reads format "
                          f"{CHECKPOINT_FORMAT}; resume it with the version that wrote it (tag innerlens.git_commit), "
                          "or start a new run")


def training_state(experiment: Experiment, state: EngineState) -> dict[str, Any]:
    """The resumable part of a checkpoint (model, optimizer, RNGs, engine state)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": experiment.model.state_dict(),
        "optimizer": experiment.optimizer.state_dict(),
        "epoch": state.epoch,
        "engine": state.to_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": experiment.generator.get_state(),
                # dropout on a GPU draws from the device's generators: a resumed run continues them too
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }


def restore(experiment: Experiment, checkpoint: dict[str, Any]) -> EngineState:
    """Load a checkpoint written by :func:`training_state` and return the engine state to continue."""
    experiment.model.load_state_dict(checkpoint["model"])
    experiment.optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    experiment.generator.set_state(checkpoint["rng"]["data"])
    cuda_states = checkpoint["rng"].get("cuda", [])
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    return EngineState(**checkpoint["engine"])


def fit(
    experiment: Experiment,
    *,
    max_epochs: int,
    selection: Selection,
    callbacks: list[Callback],
    state: EngineState | None = None,
    progress: bool = True,
    steps_per_round: int = 1,
) -> FitResult:
    """Train until ``max_epochs`` rounds, patience runs out or the target accuracy is reached.

    A round is one epoch, or for step-based families ``steps_per_round`` optimisation steps
    between two evaluations (``Experiment.train_round`` runs one: an epoch, or ``eval_every`` steps); patience counts rounds.
    """
    state = state or EngineState(steps_per_round=steps_per_round)
    best_state = None
    assert state.steps_per_round == steps_per_round, "a resumed fit keeps its evaluation interval"
    if state.stop_reason == "max_epochs" and max_epochs > state.epoch:
        state.stop_reason = ""  # resumed with a larger budget: train on
    # A fit restored from its final checkpoint has nothing left to train: straight to on_fit_end.
    rounds = range(state.epoch + 1, max_epochs + 1) if not state.stop_reason else range(0)
    bar = tqdm(
        rounds,
        initial=state.epoch,
        total=max_epochs,
        desc="epochs" if steps_per_round == 1 else f"rounds of {steps_per_round} steps",
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        metrics = experiment.train_round(epoch)
        metrics.update(experiment.evaluate(epoch))
        state.epoch = epoch
        value = selection.score(metrics)
        improved = value > state.best_value
        if improved:
            state.best_value, state.best_epoch, state.epochs_since_best = value, epoch, 0
            best_state = snapshot(experiment.model.state_dict())
        else:
            state.epochs_since_best += 1
        state.history.append({"step": float(state.step), **metrics})
        if selection.target_accuracy is not None and metrics[selection.target_key] >= selection.target_accuracy:
            state.stop_reason = f"target {selection.target_key}>={selection.target_accuracy}"
        elif selection.patience and state.epochs_since_best >= selection.patience:
            state.stop_reason = f"no {selection.monitor} improvement for {selection.patience} evaluations"
        elif epoch == max_epochs:
            state.stop_reason = "max_epochs"
        for callback in callbacks:
            callback.on_epoch_end(state, metrics, improved)
        bar.set_postfix({k: f"{metrics[k]:.3f}" for k in ("train/loss", selection.monitor) if k in metrics})
        if state.stop_reason:
            break
    for callback in callbacks:
        callback.on_fit_end(state)
    return FitResult(state, best_state)
