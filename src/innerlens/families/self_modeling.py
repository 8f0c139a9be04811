"""Self-modeling: a transformer classifier that also predicts its own hidden activations.

Premakumar et al. 2024 ("Unexpected benefits of self-modeling in neural systems") add an
auxiliary output that regresses the network's own activations at a chosen layer; the MSE is
added to the task loss. Here the auxiliary head reads the final residual stream at the last
token (the unembedding's input) and predicts ``blocks.{l}.hook_resid_post`` at that token.
Targets are detached by default, as in the paper's code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from innerlens import tracking
from innerlens.analysis.llc import LLCSettings, estimate_llc
from innerlens.analysis.weights import weight_std
from innerlens.callbacks import history_frame, tracked_fit
from innerlens.config import EpochConfig, non_negative, option, positive
from innerlens.data.splits import split_indices
from innerlens.data.tasks import SequenceTask, modular_sum, modular_sum_seq
from innerlens.engine import Selection, resolve_device, seed_everything
from innerlens.models.transformer import native_transformer, resid_post
from innerlens.viz.curves import learning_dynamics, metric_curves
from innerlens.search_space import SearchSpec

FAMILY = "self_modeling"
VARIANTS = ("baseline", "first_layer", "middle_layer", "last_layer", "all_layers")
TASKS = ("modular_sum", "modular_sum_seq")
SELF_MODEL_LOSSES = ("normalized", "mse")
FINAL_RESIDUAL = "unembed.hook_in"


@dataclass(frozen=True)
class SelfModelingConfig(EpochConfig):
    family_name = FAMILY

    variant: str = option("middle_layer", "Which layer(s) the self-model predicts.", choices=VARIANTS)
    task: str = option("modular_sum", "modular_sum: 'a b =' -> (a+b) mod p; modular_sum_seq: 'x1..xk =' -> sum mod p.", choices=TASKS)
    p: int = option(97, "Modulus (and number of classes).", check=lambda v: None if v >= 2 else f"must be >= 2, got {v}")
    samples: int = option(5000, "Number of distinct examples generated.", check=positive)
    seq_len: int = option(4, "Operands per example for modular_sum_seq.", check=positive)
    n_layers: int = option(4, "Transformer blocks.", check=positive)
    d_model: int = option(64, "Residual stream width.", check=positive)
    n_heads: int = option(4, "Attention heads per block (must divide d_model).", check=positive)
    d_mlp: int = option(256, "MLP hidden width.", check=positive)
    self_model_weight: float = option(1.0, "Weight of the self-model MSE added to the task loss.", check=non_negative)
    detach_target: bool = option(True, "Detach the activations the self-model predicts (the paper's choice).")
    self_model_loss: str = option(
        "normalized",
        "mse: plain MSE as in the paper; normalized: MSE / mean(target^2), which shrinking activations cannot game.",
        choices=SELF_MODEL_LOSSES,
    )
    llc_every: int = option(25, "Estimate the LLC every N epochs (0: never).", check=non_negative)
    llc_epsilon: float = option(1e-4, "SGLD step size ε for the LLC.", check=positive)
    llc_gamma: float = option(100.0, "SGLD localisation γ for the LLC.", check=non_negative)
    llc_nbeta: Optional[float] = option(None, "Inverse temperature nβ (empty: batch/log(batch)).", check=positive)
    llc_chains: int = option(2, "SGLD chains per LLC estimate.", check=positive)
    llc_draws: int = option(100, "SGLD draws per chain.", check=positive)

    def check(self) -> str | None:
        base = super().check()
        if base:
            return base
        if self.d_model % self.n_heads:
            return f"--n-heads {self.n_heads} must divide --d-model {self.d_model}"
        if self.variant in ("middle_layer", "all_layers") and self.n_layers < 3:
            return f"--variant {self.variant} needs --n-layers >= 3 so that middle and last differ, got {self.n_layers}"
        available = self.p**2 if self.task == "modular_sum" else self.p**self.seq_len
        if self.samples > available:
            return f"--samples {self.samples} exceeds the {available} distinct examples of {self.task} with p={self.p}"
        n_val, n_test = int(self.samples * self.val_fraction), int(self.samples * self.test_fraction)
        if min(n_val, n_test) < 1:
            return f"--samples {self.samples} leaves an empty val or test split; use more samples"
        return None

    @property
    def llc_settings(self) -> LLCSettings:
        return LLCSettings(
            epsilon=self.llc_epsilon,
            gamma=self.llc_gamma,
            nbeta=self.llc_nbeta,
            num_chains=self.llc_chains,
            num_draws=self.llc_draws,
            batch_size=max(self.batch_size, 256),
        )


SEARCH = SearchSpec(
    metric="val/acc",
    direction="maximize",
    space=lambda trial: {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-3, 3.0, log=True),
        "self_model_weight": trial.suggest_float("self_model_weight", 0.0, 2.0),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
    },
)


def self_model_layers(variant: str, n_layers: int) -> list[int]:
    """Layers whose residual output the self-model predicts."""
    return {
        "baseline": [],
        "first_layer": [0],
        "middle_layer": [n_layers // 2],
        "last_layer": [n_layers - 1],
        "all_layers": list(range(n_layers)),
    }[variant]


def make_task(config: SelfModelingConfig) -> SequenceTask:
    if config.task == "modular_sum":
        return modular_sum(config.p, config.samples, config.seed)
    return modular_sum_seq(config.p, config.samples, config.seq_len, config.seed)


class SelfModelingNet(torch.nn.Module):
    """A TransformerLens classifier read at the last token, plus one self-model head per layer."""

    def __init__(self, config: SelfModelingConfig, task: SequenceTask, device: torch.device) -> None:
        super().__init__()
        self.transformer = native_transformer(
            d_vocab=task.vocab_size,
            d_vocab_out=task.num_classes,
            n_ctx=task.seq_len,
            d_model=config.d_model,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
            d_mlp=config.d_mlp,
            seed=config.seed,
            device=device,
        )
        self.layers = self_model_layers(config.variant, config.n_layers)
        self.detach_target = config.detach_target
        self.heads = torch.nn.ModuleDict(
            {str(layer): torch.nn.Linear(config.d_model, config.d_model) for layer in self.layers}
        ).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the last token (task output only)."""
        return self.transformer(x)[:, -1]

    def forward_with_self_model(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and, per self-modeled layer, (prediction, target activation) at the last token."""
        if not self.layers:
            return self(x), {}
        captured: dict[str, torch.Tensor] = {}

        def keeper(name: str) -> Callable[[torch.Tensor, object], torch.Tensor]:
            # Keyed by the name we asked for: the bridge may report an aliased hook name.
            def keep(activation: torch.Tensor, hook: object) -> torch.Tensor:
                captured[name] = activation[:, -1]
                return activation

            return keep

        names = [resid_post(layer) for layer in self.layers] + [FINAL_RESIDUAL]
        logits = self.transformer.run_with_hooks(x, fwd_hooks=[(name, keeper(name)) for name in names])[:, -1]
        final = captured[FINAL_RESIDUAL]
        pairs = {}
        for layer in self.layers:
            target = captured[resid_post(layer)]
            pairs[layer] = (self.heads[str(layer)](final), target.detach() if self.detach_target else target)
        return logits, pairs


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
        self.model = SelfModelingNet(config, task, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        x, y = self.data["train"]
        order = torch.randperm(len(y), generator=self.generator).to(x.device)
        # Sums stay on the device; one sync at the end of the epoch, not one per step.
        loss_sum = torch.zeros((), device=x.device)
        correct = torch.zeros((), device=x.device)
        layer_sums = {layer: torch.zeros((), device=x.device) for layer in self.model.layers}
        for start in range(0, len(y), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            logits, pairs = self.model.forward_with_self_model(x[batch])
            task_loss = F.cross_entropy(logits, y[batch])
            loss = task_loss
            if pairs:
                layer_losses = {layer: self.self_model_loss(pred, target) for layer, (pred, target) in pairs.items()}
                loss = loss + self.config.self_model_weight * torch.stack(list(layer_losses.values())).mean()
                for layer, value in layer_losses.items():
                    layer_sums[layer] += value.detach() * len(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += task_loss.detach() * len(batch)
            correct += (logits.argmax(-1) == y[batch]).sum()
        metrics = {"train/loss": loss_sum.item() / len(y), "train/acc": correct.item() / len(y)}
        metrics.update({f"selfmodel/layer_{layer}/loss": value.item() / len(y) for layer, value in layer_sums.items()})
        return metrics

    def self_model_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Plain MSE lets a transformer shrink its residual stream until the task is never learned
        (seen with weight 1 at the default size); dividing by the target's mean square removes that exit."""
        mse = F.mse_loss(prediction, target)
        if self.config.self_model_loss == "mse":
            return mse
        return mse / target.detach().pow(2).mean().clamp_min(1e-8)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        self.model.eval()
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            x, y = self.data[split]
            logits = self.model(x)
            metrics[f"{split}/loss"] = F.cross_entropy(logits, y).item()
            metrics[f"{split}/acc"] = (logits.argmax(-1) == y).float().mean().item()
        for key, value in weight_std(self.model.transformer).items():
            metrics["weights/std" if key == "all" else f"weights/std/{key}"] = value
        if self.config.llc_every and epoch % self.config.llc_every == 0:
            metrics.update(self.llc_metrics(epoch))
        return metrics

    def llc_metrics(self, epoch: int) -> dict[str, float]:
        """LLC of the task loss on the training set (self-model heads excluded)."""
        x, y = self.data["train"]
        with torch.enable_grad():
            estimate = estimate_llc(
                self.model,
                x,
                y,
                lambda model, inputs, labels: F.cross_entropy(model(inputs), labels),
                self.config.llc_settings,
                seed=self.config.seed * 100_003 + epoch,
            )
        return {
            "llc/mean": estimate.mean,
            "llc/std": estimate.std,
            "llc/healthy": float(estimate.healthy),
        }


SINGLE_RUN_GROUP = "variant"


def figures(history: pd.DataFrame, group: str = SINGLE_RUN_GROUP) -> dict[str, Figure]:
    """The six self-modeling plots from a tidy frame with a ``group`` column (one or many runs)."""
    selfmodel_keys = sorted(k for k in history["key"].unique() if k.startswith("selfmodel/"))
    return {
        "accuracy": metric_curves(history, ["train/acc", "val/acc", "test/acc"], group=group, title="Accuracy"),
        "loss": metric_curves(history, ["train/loss", "val/loss", "test/loss"], group=group, title="Task loss", log_y=True),
        "weight_std": metric_curves(history, ["weights/std"], group=group, title="Weight std"),
        "rlct": metric_curves(history, ["llc/mean"], group=group, title="RLCT (local learning coefficient)"),
        "self_model_loss": metric_curves(
            history, selfmodel_keys or ["selfmodel/loss"], group=group, title="Self-model loss (MSE)", log_y=bool(selfmodel_keys)
        ),
        "learning_dynamics": learning_dynamics(history, ["val", "test"], group=group, title="Learning dynamics"),
    }


def run(config: SelfModelingConfig, *, nested: bool = False, progress: bool = True) -> str:
    """Train one variant with one seed into its own MLflow run; return the run id."""
    device = resolve_device(config.device)
    experiment = SelfModelingExperiment(config, device)
    with tracking.start_run(
        config, variant=config.variant, run_name=f"{config.variant}-s{config.seed}", nested=nested
    ) as tracker:
        settings = config.llc_settings
        tracker.set_tags({"innerlens.target_split": config.target_split, "innerlens.device": str(device)})
        if not config.resume and config.llc_every:
            tracker.set_tags({"innerlens.llc_nbeta": str(settings.resolved_nbeta(len(experiment.data["train"][1])))})
        state = tracked_fit(
            experiment, tracker, config, max_epochs=config.max_epochs, progress=progress,
            selection=Selection(
                patience=config.patience, target_accuracy=config.target_accuracy, target_split=config.target_split
            ),
        )
        history = history_frame(state.history).assign(run_id=tracker.run_id, variant=config.variant)
        for name, figure in figures(history).items():
            tracker.log_figure(figure, name)
        return tracker.run_id
