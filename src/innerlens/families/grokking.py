"""Grokking: delayed generalization on modular arithmetic (Power et al. 2022; Nanda et al. 2023).

Defaults reproduce Nanda et al.'s setup: a one-layer ReLU transformer without LayerNorm,
full-batch AdamW (lr 1e-3, weight decay 1.0, betas 0.9/0.98, 10-step warm-up), p = 113 and
30 % of all pairs for training, the loss computed in float64. Training is step-based: the
engine's rounds are ``--eval-every`` optimisation steps, and every metric is logged against
the step. What is particular here: the task table, progress measures, transition detection,
log-spaced snapshots and the figures and dashboard built from them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from innerlens.analysis.attention import head_statistics
from innerlens.analysis.features import effective_dimension
from innerlens.analysis.fourier import frequency_norms, gini, progress_measures
from innerlens.analysis.transitions import Transitions, detect_transitions, progress_phases
from innerlens.configs.grokking import GrokkingConfig
from innerlens.data.splits import SplitIndices, split_indices
from innerlens.data.tasks import SequenceTask, modular_table, with_shortcut
from innerlens.engine import EngineState, FitResult, FlatAdamW, Selection, history_frame, seed_everything, snapshot
from innerlens.models.hooks import attention_pattern
from innerlens.models.transformer import final_position_logits, nanda_init_, native_transformer
from innerlens.plan import Plan, RunLog

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SNAPSHOT_PREFIX = "steps/step_"


def snapshot_steps(max_steps: int, eval_every: int, count: int) -> list[int]:
    """Log-spaced evaluation steps (multiples of ``eval_every``) from the first evaluation to the end, plus step 0."""
    if count == 0:
        return []
    raw = np.geomspace(eval_every, max_steps, num=max(count - 1, 1))
    steps = sorted({int(round(s / eval_every)) * eval_every for s in raw} | {0})
    return steps


def make_task(config: GrokkingConfig) -> tuple[SequenceTask, SplitIndices]:
    operation = "add" if config.task == "shortcut" else config.task
    task = modular_table(operation, config.p)
    splits = split_indices(len(task.y), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
    if config.task == "shortcut":
        task = with_shortcut(task, splits.train, config.shortcut_strength, config.seed)
    return task, splits


def build_model(config: GrokkingConfig, task: SequenceTask, device: torch.device) -> torch.nn.Module:
    model = native_transformer(
        d_vocab=task.vocab_size,
        d_vocab_out=task.num_classes,
        n_ctx=task.seq_len,
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_mlp=config.d_mlp,
        act_fn=config.act_fn,
        normalization=None if config.normalization == "none" else config.normalization,
        seed=config.seed,
        device=device,
    )
    if config.init == "nanda":
        nanda_init_(model, d_model=config.d_model, d_vocab=task.vocab_size, seed=config.seed)
    return model


class GrokkingExperiment:
    """Step-based training with the whole dataset on the device: no DataLoader on the hot path."""

    def __init__(self, config: GrokkingConfig, device: torch.device) -> None:
        seed_everything(config.seed)
        self.config = config
        self.task, splits = make_task(config)
        self.data = {name: (self.task.x[idx].to(device), self.task.y[idx].to(device)) for name, idx in splits.items()}
        self.model = build_model(config, self.task, device)
        self.optimizer = FlatAdamW(self.model, device, lr=config.lr, weight_decay=config.weight_decay,
                                   betas=(config.beta1, config.beta2))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.loss_dtype = getattr(torch, config.loss_dtype)
        self.grid = modular_table("add", config.p).x.to(device) if config.fourier_ready else None

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.to(self.loss_dtype), labels)

    def train_round(self, round_index: int) -> dict[str, float]:
        """``eval_every`` optimisation steps (the engine's round)."""
        self.model.train()
        x, y = self.data["train"]
        first = (round_index - 1) * self.config.eval_every + 1
        for step in range(first, first + self.config.eval_every):
            lr = self.config.lr * min(1.0, step / self.config.warmup_steps) if self.config.warmup_steps else self.config.lr
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.config.batch_size:
                rows = torch.randint(0, len(y), (self.config.batch_size,), generator=self.generator).to(x.device)
                inputs, labels = x[rows], y[rows]
            else:
                inputs, labels = x, y
            loss = self.loss(final_position_logits(self.model, inputs), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {"lr": lr}

    @torch.no_grad()
    def evaluate(self, round_index: int) -> dict[str, float]:
        self.model.eval()
        step = round_index * self.config.eval_every
        metrics: dict[str, float] = {}
        for split, (x, y) in self.data.items():
            logits = final_position_logits(self.model, x)
            metrics[f"{split}/loss"] = float(self.loss(logits, y))
            metrics[f"{split}/acc"] = float((logits.argmax(-1) == y).float().mean())
        metrics["gap/acc"] = metrics["train/acc"] - metrics["val/acc"]
        metrics["gap/loss"] = metrics["val/loss"] - metrics["train/loss"]
        metrics["weights/norm"] = float(torch.sqrt(sum(p.pow(2).sum() for p in self.model.parameters())))
        if self.config.analysis_every and step % self.config.analysis_every == 0:
            metrics.update(self.analysis_metrics())
        return metrics

    @torch.no_grad()
    def analysis_metrics(self, key_frequencies: list[int] | None = None) -> dict[str, float]:
        """Progress measures, head statistics and embedding geometry of the current weights."""
        metrics: dict[str, float] = {}
        p = self.config.p
        embedding = self.model.W_E[:p]
        metrics["features/effective_dim"] = effective_dimension(embedding)
        if self.config.task in ("add", "sub", "shortcut"):
            norms = frequency_norms(embedding)
            metrics["fourier/gini"] = gini(norms)
            metrics.update({f"fourier/k_{k + 1:03d}": float(v) for k, v in enumerate(norms)})
        if self.grid is not None:
            grid_logits = self.grid_logits()
            train_pairs = self.data["train"][0][:, :2]
            measures = progress_measures(
                embedding, grid_logits, train_pairs, key_count=self.config.key_frequencies, frequencies=key_frequencies
            )
            metrics["grok/restricted_loss"] = measures.restricted_loss
            metrics["grok/excluded_loss"] = measures.excluded_loss
            metrics.update({f"grok/key_frequency_{i}": float(k) for i, k in enumerate(measures.key_frequencies)})
        stats = self.head_stats()
        for head in range(self.config.n_heads):
            metrics[f"attn/head_{head}/entropy"] = float(stats["entropy"][head])
            for position, name in enumerate(self.config.tokens):
                metrics[f"attn/head_{head}/to_{'eq' if name == '=' else name}"] = float(stats["share"][head, position])
        return metrics

    def grid_logits(self) -> torch.Tensor:
        """Logits for every ``a b =`` (p, p, p); the shortcut task gets a neutral shortcut token (0)."""
        assert self.grid is not None
        grid = self.grid
        if self.config.task == "shortcut":
            grid = torch.cat([grid[:, :2], torch.zeros_like(grid[:, :1]), grid[:, 2:]], 1)
        p = self.config.p
        return final_position_logits(self.model, grid).view(p, p, p)

    def head_stats(self) -> dict[str, torch.Tensor]:
        hook = attention_pattern(self.config.n_layers - 1)  # the last block's heads (the only one in Nanda's model)
        _, cache = self.model.run_with_cache(self.data["train"][0], names_filter=lambda name: name == hook)
        return head_statistics(cache[hook], query=-1)


class Snapshots:
    """Model weights at log-spaced steps: kept in memory for the run's figures and written as
    ``checkpoints/steps/step_NNNNNN.pt`` so ``innerlens analyze`` can redo the analyses later."""

    def __init__(self, tracker: RunLog, experiment: GrokkingExperiment, steps: list[int]) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.steps = set(steps)
        self.taken: dict[int, dict[str, torch.Tensor]] = {}

    def take(self, step: int) -> None:
        weights = snapshot(self.experiment.model.state_dict())
        self.taken[step] = weights
        self.tracker.save_checkpoint(f"{SNAPSHOT_PREFIX}{step:06d}", {"model": weights, "step": step})

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        if state.step in self.steps:
            self.take(state.step)

    def on_fit_end(self, state: EngineState) -> None:
        pass


def transitions_of(history: pd.DataFrame, config: GrokkingConfig) -> Transitions:
    """Transition detection on a tidy history (validation curves are the held-out signal)."""
    curves = ["train/acc", "val/acc", "val/loss"]
    wide = history[history["key"].isin(curves)].pivot_table(index="step", columns="key", values="value")
    wide = wide.reindex(columns=curves).dropna().sort_index()  # evaluation steps only
    transitions = detect_transitions(
        wide.index.to_numpy(),
        wide["train/acc"].to_numpy(),
        wide["val/acc"].to_numpy(),
        wide["val/loss"].to_numpy(),
        memorization_threshold=config.memorization_threshold,
        generalization_threshold=config.generalization_threshold,
    )
    measures = ["grok/excluded_loss", "grok/restricted_loss"]
    analysed = history[history["key"].isin(measures)].pivot_table(index="step", columns="key", values="value")
    analysed = analysed.reindex(columns=measures).dropna().sort_index()  # analysis steps only
    if len(analysed) < 3:
        return transitions
    progress = progress_phases(analysed.index.to_numpy(), analysed[measures[0]].to_numpy(), analysed[measures[1]].to_numpy())
    return dataclasses.replace(transitions, progress=progress)


def log_transitions(tracker: RunLog, config: GrokkingConfig, history: pd.DataFrame) -> Transitions:
    """``grok/...`` metrics at the last step and an ``innerlens.grokked`` tag."""
    transitions = transitions_of(history, config)
    tracker.log_metrics(int(history["step"].max()), transitions.metrics())
    tracker.set_tags({"innerlens.grokked": str(not math.isnan(transitions.generalization_step)).lower()})
    return transitions


def log_figures(
    tracker: RunLog,
    config: GrokkingConfig,
    experiment: GrokkingExperiment,
    history: pd.DataFrame,
    snapshots: dict[int, dict[str, torch.Tensor]],
) -> Transitions:
    """Every figure and the dashboard, into the run."""
    from innerlens.viz import grokking as viz

    transitions = transitions_of(history, config)
    evolution = snapshot_evolution(experiment, snapshots)
    figures = viz.run_figures(history, transitions, evolution, config.tokens, tsne=config.tsne)
    for name, figure in figures.items():
        tracker.log_figure(figure, name)
    if config.dashboard:
        tracker.log_text(viz.dashboard(history, transitions, evolution, config.tokens, title=f"grokking {config.task} p={config.p} seed {config.seed}"), "figures/dashboard.html")
    return transitions


def snapshot_evolution(experiment: GrokkingExperiment, snapshots: dict[int, dict[str, torch.Tensor]]) -> dict[int, dict[str, Any]]:
    """Per snapshot step: embedding of the p residues and mean attention pattern per head (query '=')."""
    current = snapshot(experiment.model.state_dict())
    hook = attention_pattern(experiment.config.n_layers - 1)
    evolution: dict[int, dict[str, Any]] = {}
    try:
        for step in sorted(snapshots):
            experiment.model.load_state_dict(snapshots[step])
            with torch.no_grad():
                _, cache = experiment.model.run_with_cache(
                    experiment.data["train"][0], names_filter=lambda name: name == hook
                )
            evolution[step] = {
                "embedding": experiment.model.W_E[: experiment.config.p].detach().cpu().to(torch.float64),
                "pattern": cache[hook][:, :, -1, :].mean(0).cpu().to(torch.float64),  # heads x keys
            }
    finally:
        experiment.model.load_state_dict(current)
    return evolution


@dataclass
class GrokkingPlan(Plan):
    """A grokking run and the log-spaced snapshots its figures are drawn from."""

    snapshots: Snapshots | None = None

    def start(self, tracker: RunLog, resumed: bool) -> tuple[Snapshots]:
        experiment: GrokkingExperiment = self.experiment
        config = experiment.config
        self.snapshots = Snapshots(tracker, experiment, snapshot_steps(config.max_steps, config.eval_every, config.snapshots))
        if resumed:
            self.snapshots.taken.update(load_snapshots(tracker))
        if 0 in self.snapshots.steps and 0 not in self.snapshots.taken:
            self.snapshots.take(0)
        return (self.snapshots,)


def build(config: GrokkingConfig, device: torch.device) -> GrokkingPlan:
    """One grokking run: step-based, one engine round = ``eval_every`` steps."""
    return GrokkingPlan(GrokkingExperiment(config, device), variant=config.task,
                        run_name=f"{config.task}-p{config.p}-s{config.seed}",
                        selection=Selection(patience=config.patience, target_accuracy=config.target_accuracy,
                                            target_split=config.target_split),
                        rounds=config.rounds, steps_per_round=config.eval_every, step_unit="step")


def report(tracker: RunLog, plan: GrokkingPlan, fit: FitResult) -> None:
    """The last snapshot, the transitions and every figure."""
    assert plan.snapshots is not None
    if fit.state.step not in plan.snapshots.taken:
        plan.snapshots.take(fit.state.step)
    history = history_frame(fit.state.history)
    log_transitions(tracker, plan.experiment.config, history)
    log_figures(tracker, plan.experiment.config, plan.experiment, history, plan.snapshots.taken)


def load_snapshots(log: RunLog) -> dict[int, dict[str, torch.Tensor]]:
    """Every ``checkpoints/steps/step_*.pt`` of the run, by step."""
    loaded = {}
    for name in log.list_checkpoints("steps"):
        payload = log.load_checkpoint(f"steps/{name}")
        loaded[int(payload["step"])] = payload["model"]
    return loaded


def comparison_figures(history: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame,
                       read_table: Callable[[str, str], pd.DataFrame]) -> dict[str, Figure]:
    """compare's figure for grokking runs: when each group generalized."""
    from innerlens.analysis.censored import event_table
    from innerlens.viz.grokking import time_to_generalize

    steps = summary[summary["key"] == "grok/generalization_step"].rename(columns={"final": "generalization_step"})
    if steps.empty:
        return {}
    horizon = float(history["step"].max())
    table = event_table(steps, "group", "generalization_step", horizon)
    return {"grokking_time_to_generalize": time_to_generalize(steps, table, "group", horizon)}
