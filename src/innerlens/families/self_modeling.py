"""Self-modeling: a classifier that also predicts its own hidden activations.

Premakumar et al. 2024 ("Unexpected benefits of self-modeling in neural systems") add an
auxiliary output that regresses the network's own activations at a chosen layer; the MSE is
added to the task loss. Two substrates:

- ``--model mlp``: the paper's own wiring (:class:`~innerlens.models.mlp.SelfModelingMLP`), the
  output layer's extra units predicting the post-ReLU hidden layer(s);
- ``--model transformer``: an auxiliary head reads the final residual stream at the last token
  (the unembedding's input) and predicts ``blocks.{l}.hook_resid_post`` at that token.

Targets are detached by default, as in the paper's code. Complexity is measured at the end of
training with two LLC estimators (``calibrated`` and the paper's) and two weight spreads (the
classifier alone, and every weight matrix including the self-model's), and every run says whether
it had settled (:mod:`innerlens.analysis.settling`).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from innerlens.analysis.llc import LLCEstimate, LLCSettings, estimate_llc
from innerlens.analysis.settling import settling
from innerlens.analysis.transitions import GENERALISED, dynamics_summary, first_generalised
from innerlens.analysis.weights import spread, weight_std
from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.data.images import FeatureTask, digit_features, fashion_mnist
from innerlens.data.splits import split_indices
from innerlens.data.tasks import SequenceTask, digit_patches, modular_sum, modular_sum_seq
from innerlens.engine import (
    EngineState,
    FitResult,
    FlatAdamW,
    Selection,
    decayed_lr_factor,
    history_frame,
    seed_everything,
    set_lr,
    snapshot,
)
from innerlens.families.seed_stack import SeedStack
from innerlens.families.self_modeling_training import match_gradient_share, round_metrics, training_loss
from innerlens.models.mlp import SelfModelingMLP
from innerlens.models.self_modeling_net import CONTROL, SelfModelingNet, self_model_layers
from innerlens.plan import Plan, RunLog
from innerlens.viz.curves import llc_traces
from innerlens.viz.self_modeling import figures


def make_task(config: SelfModelingConfig) -> SequenceTask | FeatureTask:
    """The task's examples: token sequences for the transformer, feature rows for the MLP
    (``--samples`` of them drawn without replacement by the seed)."""
    if config.model == "mlp":
        task = fashion_mnist() if config.task == "fashion_mnist" else digit_features()
        keep = torch.randperm(len(task.y), generator=torch.Generator().manual_seed(config.seed))[: config.n_samples]
        return replace(task, x=task.x[keep], y=task.y[keep])
    if config.task == "digits":
        return digit_patches(config.samples, config.seed)
    if config.task == "modular_sum":
        return modular_sum(config.p, config.n_samples, config.seed)
    return modular_sum_seq(config.p, config.n_samples, config.seq_len, config.seed)


AFTER_GENERALISATION = "after_generalisation"
RELABEL_SEED = 104_729  # offsets --seed for the --relabel-* permutations (apart from the data's and the init's)
MEASURED_AT = ("final", "best", AFTER_GENERALISATION)  # where a run is measured; the index offsets the LLC's seed


def relabelling(seed: int, size: int, device: torch.device) -> torch.Tensor:
    """The fixed permutation a --relabel-* rounding control applies (from the run's seed)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed + RELABEL_SEED)).to(device)


class SelfModelingExperiment:
    """The engine's view of one self-modeling run: data on the device, model, optimiser, analyses."""

    def __init__(self, config: SelfModelingConfig, device: torch.device) -> None:
        seed_everything(config.seed)
        self.config = config
        task = make_task(config)
        splits = split_indices(
            len(task.y), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed
        )
        self.data = {name: (task.x[idx].to(device), task.y[idx].to(device)) for name, idx in splits.items()}
        self.model = build_model(config, task, device)
        if config.relabel_inputs:  # the rounding control: the same training in exact arithmetic, other float sums
            order = relabelling(config.seed, task.x.shape[1], device)
            self.data = {name: (x[:, order], y) for name, (x, y) in self.data.items()}
            self.model.relabel_inputs(order)
        if config.relabel_classes:  # the rounding control for either model: other float sums over the classes
            order = relabelling(config.seed, task.num_classes, device)
            new_label = torch.argsort(order)  # class order[k] is now called k
            self.data = {name: (x, new_label[y]) for name, (x, y) in self.data.items()}
            self.model.relabel_classes(order)
        if config.self_model_grad_share is not None and self.model.layers:
            self.model.register_buffer("aux_weight", torch.tensor(config.self_model_weight, device=device))
        if config.end_after_generalisation:  # in the model's state, so a resumed run keeps its end and its schedule
            self.model.register_buffer("generalised_at", torch.tensor(-1, device=device))
        self.optimizer = make_optimizer(config, self.model, device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.stack: tuple[SeedStack, int] | None = None  # set when this seed trains inside a stacked cell

    def train_round(self, epoch: int) -> dict[str, float]:
        if self.stack is not None:  # one seed of a stacked cell: the stack trains every seed at once
            stack, index = self.stack
            return stack.train_round(self, index, epoch)
        self.model.train()
        set_lr(self.optimizer, self.config.lr * self.lr_factor(epoch))
        x, y = self.data["train"]
        order = self.epoch_order()
        matched = {}
        if hasattr(self.model, "aux_weight"):  # re-match the auxiliary strength on this epoch's first minibatch
            first = order[: self.config.batch_size]
            share = match_gradient_share(self.model, self.config, x[first], y[first], smooth=epoch > 1)
            matched = {"aux/grad_share_before": share, "aux/weight": self.model.aux_weight.item()}
        # Sums stay on the device; one sync at the end of the epoch, not one per step.
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device)
        layer_sums = {layer: torch.zeros((), device=x.device) for layer in self.model.layers}
        for start in range(0, len(y), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            loss, task_loss, logits, layer_losses = training_loss(self.model, self.config, x[batch], y[batch])
            for layer, value in layer_losses.items():
                layer_sums[layer] += value.detach() * len(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += task_loss.detach() * len(batch)
            correct += (logits.argmax(-1) == y[batch]).sum()
        return {**round_metrics(loss_sum, correct, layer_sums, len(y)), **matched}

    def end_epoch(self) -> int:
        """The run's last epoch: --max-epochs, or --end-after-generalisation epochs after it generalised."""
        after = self.config.end_after_generalisation
        reached = int(self.model.generalised_at) if after else -1
        return min(self.config.max_epochs, reached + after) if reached >= 0 else self.config.max_epochs

    def lr_factor(self, epoch: int) -> float:
        """--lr-decay's multiplier: over the last fraction of the budget, or with --end-after-generalisation
        of the epochs after generalising, ending where the run ends (constant until that fall begins, so
        learning the end later never bends the schedule already run)."""
        if not self.config.end_after_generalisation:
            return decayed_lr_factor(epoch, self.config.max_epochs, self.config.lr_decay)
        length = self.config.end_after_generalisation
        return decayed_lr_factor(epoch - (self.end_epoch() - length), length, self.config.lr_decay)

    def epoch_order(self) -> torch.Tensor:
        """This epoch's order of the training examples, from the run's own data generator."""
        x, y = self.data["train"]
        return torch.randperm(len(y), generator=self.generator).to(x.device)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            x, y = self.data[split]
            logits = self.model(x)
            metrics[f"{split}/loss"] = F.cross_entropy(logits, y).item()
            metrics[f"{split}/acc"] = (logits.argmax(-1) == y).float().mean().item()
        if self.config.end_after_generalisation and self.model.generalised_at < 0 and metrics["val/acc"] >= GENERALISED:
            self.model.generalised_at.fill_(epoch)
        metrics.update(self.weight_spreads())
        if self.config.llc_every and epoch % self.config.llc_every == 0:
            with _one_at_a_time(self.stack):  # the chains seed torch's global generator: one seed of a stack at a time
                metrics.update(self.llc_metrics(epoch))
        return metrics

    def weight_spreads(self, suffix: str = "") -> dict[str, float]:
        """Std of the classifier's weight matrices (``weights/std``; per block too for the transformer)
        and of every weight matrix, the self-model's outputs included (``weights/std_all``)."""
        model = self.model
        every = spread([p.detach() for p in model.parameters() if p.ndim >= 2])
        if isinstance(model, SelfModelingNet) and not suffix:  # per block too; its "all" is the classifier's matrices
            per_block = weight_std(model.transformer)
            return {"weights/std": per_block.pop("all"), "weights/std_all": every,
                    **{f"weights/std/{key}": value for key, value in per_block.items()}}
        return {f"weights/std{suffix}": spread(model.task_weight_matrices()), f"weights/std_all{suffix}": every}

    def llc(self, seed: int, settings: LLCSettings | None = None) -> LLCEstimate:
        """LLC of the task loss on the training set at the current weights (self-model heads excluded)."""
        x, y = self.data["train"]
        with torch.enable_grad():
            return estimate_llc(
                self.model,
                x,
                y,
                lambda model, inputs, labels: F.cross_entropy(model(inputs), labels),
                settings or self.config.llc_settings,
                seed=seed,
            )

    def llc_metrics(self, epoch: int) -> dict[str, float]:
        estimate = self.llc(self.config.seed * 100_003 + epoch)
        return {"llc/mean": estimate.mean, "llc/std": estimate.std, "llc/healthy": float(estimate.healthy)}

    def measure(self, which: str, weights: dict[str, torch.Tensor]) -> tuple[dict[str, float], pd.DataFrame]:
        """Weight std and LLC at ``weights`` (``which`` is final or best), and the LLC chains' loss traces.

        Every run is measured the same way at the same two points, so variants compare at equal
        footing whatever their training curves did.
        """
        current = snapshot(self.model.state_dict())
        self.model.load_state_dict(weights)
        runs: list[tuple[str, LLCSettings]] = []  # (metric suffix, settings) of each estimate
        if self.config.llc_skipped is None and (which != "best" or self.config.llc_at_best):
            for estimator in self.config.llc_estimators:
                settings = self.config.llc_estimator(estimator)
                name = "" if estimator == "calibrated" else f"_{estimator}"
                runs.append((name, settings))
                if estimator == "calibrated" and which == "final" and self.config.llc_gamma_sensitivity:
                    runs += [(f"_gamma_{gamma:g}", replace(settings, gamma=gamma)) for gamma in (settings.gamma / 10, settings.gamma * 10)]
        metrics = self.weight_spreads(f"_{which}")
        traces = []
        for suffix, settings in runs:
            estimate = self.llc(self.config.seed * 100_003 + MEASURED_AT.index(which), settings)
            metrics.update({f"llc/{which}_mean{suffix}": estimate.mean, f"llc/{which}_std{suffix}": estimate.std,
                            f"llc/{which}_healthy{suffix}": float(estimate.healthy)})
            estimator = suffix.lstrip("_") if "gamma" not in suffix else "calibrated"
            traces += [{"which": which, "estimator": estimator or "calibrated", "gamma": settings.gamma, "chain": chain,
                        "draw": draw, "loss": loss}
                       for chain, trace in enumerate(estimate.loss_traces) for draw, loss in enumerate(trace)]
        self.model.load_state_dict(current)
        return metrics, pd.DataFrame(traces)


class MeasureAfterGeneralisation:
    """Measures the run ``epochs`` after validation accuracy first reached 0.95 (from the engine's history,
    so a resumed run finds the same epoch) and logs it at that step."""

    def __init__(self, log: RunLog, experiment: SelfModelingExperiment, epochs: int) -> None:
        self.log, self.experiment, self.epochs = log, experiment, epochs

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        reached = first_generalised(state.history)
        if reached is not None and state.epoch == reached + self.epochs:
            with _one_at_a_time(self.experiment.stack):
                measured, _ = self.experiment.measure(AFTER_GENERALISATION, snapshot(self.experiment.model.state_dict()))
            self.log.log_metrics(state.step, measured)

    def on_fit_end(self, state: EngineState) -> None:
        pass


class EndAfterGeneralisation:
    """Stops the run at the experiment's end epoch (--end-after-generalisation epochs after it generalised)."""

    def __init__(self, experiment: SelfModelingExperiment) -> None:
        self.experiment = experiment

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        if not state.stop_reason and state.epoch >= self.experiment.end_epoch():
            state.stop_reason = f"{self.experiment.config.end_after_generalisation} epochs after generalising"

    def on_fit_end(self, state: EngineState) -> None:
        pass


@dataclass
class SelfModelingPlan(Plan):
    """A self-modeling run; with --llc-after-generalisation, the callback that measures it there, and with
    --end-after-generalisation the one that ends it."""

    def start(self, log: RunLog, resumed: bool) -> tuple[MeasureAfterGeneralisation | EndAfterGeneralisation, ...]:
        experiment: SelfModelingExperiment = self.experiment
        config = experiment.config
        measure = [MeasureAfterGeneralisation(log, experiment, config.llc_after_generalisation)] if config.llc_after_generalisation else []
        end = [EndAfterGeneralisation(experiment)] if config.end_after_generalisation else []
        return (*measure, *end)


def build_model(config: SelfModelingConfig, task: SequenceTask | FeatureTask, device: torch.device) -> torch.nn.Module:
    """The substrate ``--model`` names, with the self-model the variant asks for."""
    if isinstance(task, FeatureTask):
        layers = self_model_layers(config.variant, config.hidden_layers)
        return SelfModelingMLP(task.n_features, task.num_classes, [config.hidden] * config.hidden_layers, layers,
                               detach_target=config.detach_target, input_control=config.variant == CONTROL,
                               seed=config.seed, device=device)
    return SelfModelingNet(task, d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads, d_mlp=config.d_mlp,
                           seed=config.seed, variant=config.variant, detach_target=config.detach_target, device=device)


def make_optimizer(config: SelfModelingConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over one flat buffer, or the paper's SGD with Nesterov momentum."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                               weight_decay=config.weight_decay)
    return FlatAdamW(model, device, lr=config.lr, weight_decay=config.weight_decay)


def comparison_figures(history: pd.DataFrame, runs: pd.DataFrame, summary: pd.DataFrame,
                       read_table: Callable[[str, str], pd.DataFrame]) -> dict[str, Figure]:
    """compare's figures for self-modeling runs: the six plots, one line and band per group."""
    return {f"self_modeling_{name}": fig for name, fig in figures(history, group="group").items()}


def build(config: SelfModelingConfig, device: torch.device, stack: tuple[SeedStack, int] | None = None) -> Plan:
    """One variant with one seed. With ``stack`` (the cell's :class:`SeedStack` and this seed's place
    in it) the epochs are trained together with the cell's other seeds."""
    with _one_at_a_time(stack):  # seeding touches torch's global generator
        experiment = SelfModelingExperiment(config, device)
    experiment.stack = stack
    nbeta = config.llc_settings.resolved_nbeta(config.train_size)
    skipped = config.llc_skipped
    return SelfModelingPlan(experiment, variant=config.variant, run_name=f"{config.variant}-s{config.seed}",
                selection=Selection(patience=config.patience, target_accuracy=config.target_accuracy,
                                    target_split=config.target_split),
                rounds=config.max_epochs,
                tags={"innerlens.llc_nbeta": str(nbeta), **({"innerlens.llc_skipped": skipped} if skipped else {})},
                notes=(skipped,) if skipped and config.measure_llc is None else (),
                checkpoint_due=functools.partial(stack[0].checkpoint_due, stack[1]) if stack is not None else None)


def _one_at_a_time(stack: tuple[SeedStack, int] | None) -> contextlib.AbstractContextManager[Any]:
    """The stacked cell's lock (its seeds run as threads of one process), else nothing."""
    return stack[0].lock if stack is not None else contextlib.nullcontext()


def report(tracker: RunLog, plan: Plan, fit: FitResult) -> None:
    """Measure the run at its end and at its best checkpoint the same way for every run, log the
    measurements (into the history too) and draw its figures."""
    experiment: SelfModelingExperiment = plan.experiment
    config, state = experiment.config, fit.state
    at_best = fit.best_metrics
    settled = settling([e["train/loss"] for e in state.history], [e["train/acc"] for e in state.history], config.settle_window)
    summary = {"test/acc_at_best": at_best["test/acc"], "test/loss_at_best": at_best["test/loss"],
               "val/acc_at_best": at_best["val/acc"], "train/acc_final": state.history[-1]["train/acc"],
               "test/acc_final": state.history[-1]["test/acc"], "train/loss_final": state.history[-1]["train/loss"],
               "train/settled": float(settled.settled),
               **({"train/settled_epoch": float(settled.epoch)} if settled.epoch is not None else {}),
               **dynamics_summary(state.history, config.max_epochs)}
    with _one_at_a_time(experiment.stack):  # the LLC's chains seed torch's global generator; matplotlib draws one figure at a time
        final, final_traces = experiment.measure("final", snapshot(experiment.model.state_dict()))
        if state.best_step == state.step:  # the last epoch is the best: one measurement serves both
            at_best_weights = {key.replace("_final", "_best").replace("/final_", "/best_"): value
                               for key, value in final.items() if "_gamma_" not in key and (config.llc_at_best or not key.startswith("llc/"))}
            best_traces = final_traces.iloc[0:0]
        else:
            assert fit.best_state is not None
            at_best_weights, best_traces = experiment.measure("best", fit.best_state)
        measured = {**summary, **final, **at_best_weights}
        tracker.log_metrics(state.step, measured)
        # history.parquet holds every logged metric (compare reads it first), the measurements included.
        tracker.log_history(history_frame([*state.history, {"step": float(state.step), **measured}]))
        traces = pd.concat([final_traces, best_traces], ignore_index=True)
        drawn = figures(history_frame(state.history).assign(run_id=tracker.run_id, variant=config.variant))
        if not traces.empty:
            tracker.log_text(traces.to_csv(index=False), "tables/llc_traces.csv")
            drawn["llc_traces"] = llc_traces(traces)
        for name, figure in drawn.items():
            tracker.log_figure(figure, name)
