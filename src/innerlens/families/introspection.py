"""Introspection: a language model learns to report one of its own neuron activations.

The model reads a text; a head on its residual stream at ``--feature-layer`` (last real token
by default) predicts the activation of neuron ``--neuron`` of ``--layer`` at that token, as a
number (regression) or a quantile bin (classification). Unfreezing the model lets it change
the very neuron it reports on; ``--targets live`` recomputes labels from the current model, and
the drift metrics say whether it made that neuron easier to predict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from innerlens import tracking
from innerlens.analysis.neurons import ScanResult, at_position, hook_name, scan, unit_activations
from innerlens.callbacks import history_frame, metrics_at, tracked_fit
from innerlens.config import ConfigError
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.data.splits import split_indices
from innerlens.data.texts import generate_texts, read_texts
from innerlens.engine import Selection, resolve_device, seed_everything
from innerlens.local_copy import check_output_dir, write_local_copy
from innerlens.models.hooks import hook_layer, resid_post, residual_after
from innerlens.models.loading import LoadedModel, encode, lm_loss, load_model, real_tokens
from innerlens.search_space import SearchSpec
from innerlens.tracking import RunTracker


def _introspection_space(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "head_lr": trial.suggest_float("head_lr", 1e-3, 3e-2, log=True),
    }


# Regression runs select on val/r2, classification on val/acc: both "higher is better".
SEARCH = SearchSpec(metric=lambda config: config.monitor, direction="maximize", space=_introspection_space)

def check_against_model(config: IntrospectionConfig, model: LoadedModel, shortest_text: int) -> None:
    """Range checks that need the model: one line naming the valid range."""
    n_layers = model.n_layers
    for flag, value in (("--layer", config.layer), ("--unfreeze-from", config.unfreeze_from)):
        if value is not None and not 0 <= value < n_layers:
            raise ConfigError(f"{flag} {value} is out of range: {config.model} has layers 0..{n_layers - 1}")
    width = model.d_mlp if config.layer_type == "mlp_out" else model.d_model
    if config.neuron is not None and not 0 <= config.neuron < width:
        raise ConfigError(f"--neuron {config.neuron} is out of range: {config.layer_type} of {config.model} has neurons 0..{width - 1}")
    if config.position is not None and config.position >= shortest_text:
        raise ConfigError(f"--token-position {config.position} is beyond the shortest text ({shortest_text} tokens); use last or 0..{shortest_text - 1}")
    if config.feature_layer is not None and not -1 <= config.feature_layer < n_layers:
        raise ConfigError(f"--feature-layer {config.feature_layer} is out of range: {config.model} has layers -1 (the embeddings)..{n_layers - 1}")


def feature_layer_for(config: IntrospectionConfig, target_layer: int) -> int:
    """The residual layer the head reads: strictly below the target's layer unless a readout is asked for.

    At or above it, the features already contain the neuron's own write (W_out · its activation):
    a frozen probe then reads the target off the features, and "introspection" is a readout.
    """
    if config.feature_layer is None:
        return target_layer - 1
    if config.feature_layer >= target_layer and not config.allow_readout:
        raise ConfigError(f"--feature-layer {config.feature_layer} is not below the target's layer {target_layer}: the head would read "
                          "the neuron's own write, not predict it; choose a lower layer or add --allow-readout")
    return config.feature_layer


def trainable_parameters(bridge: torch.nn.Module, config: IntrospectionConfig, target_layer: int) -> list[str]:
    """Apply the unfreezing strategy (requires_grad) and return the names that train."""
    n_layers = len(bridge.blocks)
    for parameter in bridge.parameters():
        parameter.requires_grad_(config.unfreeze == "all")
    modules: list[torch.nn.Module] = []
    if config.unfreeze == "after_target":
        modules = [bridge.blocks[i] for i in range(target_layer + 1, n_layers)]
    elif config.unfreeze == "from_layer":
        assert config.unfreeze_from is not None
        modules = [bridge.blocks[i] for i in range(config.unfreeze_from, n_layers)]
    elif config.unfreeze == "selective":
        for component in config.unfreeze_components:
            if component == "embeddings":
                modules += [bridge.embed, bridge.pos_embed]
            else:
                modules += [getattr(block, "attn" if component == "attention" else "mlp") for block in bridge.blocks]
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    return [name for name, parameter in bridge.named_parameters() if parameter.requires_grad]


class IntrospectionHead(torch.nn.Module):
    def __init__(self, d_model: int, outputs: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(d_model, outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class Predictor(torch.nn.Module):
    """The language model and the head; one forward gives the prediction and the live target."""

    def __init__(self, bridge: torch.nn.Module, head: IntrospectionHead, feature_layer: int, target_hook: str, position: int | None,
                 target_gradient: bool = False) -> None:
        super().__init__()
        self.bridge, self.head = bridge, head
        self.feature_hook, self.target_hook, self.position = residual_after(feature_layer), target_hook, position
        self.stop_at_layer = max(feature_layer, hook_layer(target_hook)) + 1
        self.target_gradient = target_gradient  # live_gradient: the loss reaches the target's own computation

    def forward(self, ids: torch.Tensor, last: torch.Tensor, neuron: int) -> tuple[torch.Tensor, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Any:
            def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
                captured[name] = at_position(activation, last, self.position)
                return activation

            return hook

        names = {self.feature_hook, self.target_hook}
        self.bridge.run_with_hooks(ids, fwd_hooks=[(n, keep(n)) for n in names], stop_at_layer=self.stop_at_layer)
        target = captured[self.target_hook][:, neuron]
        return self.head(captured[self.feature_hook]).squeeze(-1), target if self.target_gradient else target.detach()


@dataclass
class Targets:
    """Original activations of the target neuron and how they become labels."""

    values: torch.Tensor  # (texts,) from the original model
    mean: float
    std: float
    edges: torch.Tensor  # inner quantile edges (num_bins - 1) from the training texts

    def labels(self, values: torch.Tensor, task: str) -> torch.Tensor:
        if task == "regression":
            return (values - self.mean) / self.std
        return torch.bucketize(values.contiguous(), self.edges.to(values.device))


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE divided by the target's variance in the batch: unchanged when target and prediction are
    rescaled together, so a model cannot lower it by shrinking the neuron it reports (plain MSE on
    fixed-standardised targets rewards exactly that)."""
    return F.mse_loss(prediction, target) / target.var().clamp_min(1e-8)


def regression_metrics(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """R², Pearson r and MSE in activation units."""
    prediction, truth = prediction.double().cpu(), truth.double().cpu()
    residual = ((truth - prediction) ** 2).sum()
    total = ((truth - truth.mean()) ** 2).sum().clamp_min(1e-30)
    pearson = float(np.corrcoef(prediction.numpy(), truth.numpy())[0, 1]) if prediction.std() > 0 else 0.0
    return {"r2": float(1 - residual / total), "pearson": pearson, "mse": float(residual / len(truth))}


def ridge_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Closed-form ridge regression (standardised features), the frozen linear-probe baseline."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a = (train_x - mean) / std
    weights = torch.linalg.solve(a.T @ a + alpha * torch.eye(a.shape[1], dtype=a.dtype), a.T @ (train_y - train_y.mean()))
    return ((test_x - mean) / std) @ weights + train_y.mean()


class IntrospectionExperiment:
    def __init__(self, config: IntrospectionConfig, device: torch.device, models_root: Path) -> None:
        seed_everything(config.seed)
        self.config, self.device = config, device
        self.texts = read_texts(config.texts) if config.texts else generate_texts(config.num_samples, config.seed)
        self.loaded = load_model(config.model, device, cache_root=models_root, seed=0)
        bridge = self.loaded.bridge
        self.ids, self.last = encode(self.loaded.tokenizer, self.texts, device, config.max_length)
        check_against_model(config, self.loaded, int(self.last.min()) + 1)
        self.splits = split_indices(len(self.texts), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
        if min(len(self.splits.val), len(self.splits.test)) < 2:
            raise ConfigError(f"{len(self.texts)} texts leave fewer than 2 validation or test texts; use more texts")
        layers = [config.layer] if config.layer is not None else list(range(self.loaded.n_layers))
        train = self.splits.train  # the scanner never sees validation or test texts
        self.scan: ScanResult = scan(bridge, self.ids[train], self.last[train], layer_type=config.layer_type, layers=layers, position=config.position)
        self.layer, self.neuron = (config.layer, config.neuron) if config.neuron is not None else self.scan.best(config.layer)
        self.target_hook = hook_name(config.layer_type, self.layer)
        self.feature_layer = feature_layer_for(config, self.layer)
        original = self.activations(bridge, [self.target_hook, residual_after(self.feature_layer)])
        values = original[self.target_hook][:, self.neuron]
        train_values = values[self.splits.train]
        quantiles = torch.linspace(0, 1, config.num_bins + 1, dtype=torch.float64)[1:-1]
        self.targets = Targets(values, float(train_values.mean()), float(train_values.std().clamp_min(1e-6)),
                               torch.quantile(train_values.double(), quantiles).float())
        self.original_features = original[residual_after(self.feature_layer)]
        self.trainable = trainable_parameters(bridge, config, self.layer)
        outputs = 1 if config.task == "regression" else config.num_bins
        self.model = Predictor(bridge, IntrospectionHead(self.loaded.d_model, outputs).to(device), self.feature_layer, self.target_hook,
                               config.position, target_gradient=config.targets == "live_gradient")
        groups = [{"params": list(self.model.head.parameters()), "lr": config.head_lr}]
        model_parameters = [p for p in bridge.parameters() if p.requires_grad]
        if model_parameters:
            groups.append({"params": model_parameters, "lr": config.lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.gradient_log: list[dict[str, Any]] = []
        self.activation_log: list[dict[str, Any]] = []

    def activations(self, bridge: torch.nn.Module, names: list[str], rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Activations of ``names`` at the position for all texts (or ``rows``), in batches."""
        index = torch.arange(len(self.texts)) if rows is None else rows
        stop = max(hook_layer(n) for n in names) + 1
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        for start in range(0, len(index), 64):
            batch = index[start : start + 64].to(self.device)
            for name, value in unit_activations(bridge, self.ids[batch], self.last[batch], names, self.config.position, stop).items():
                parts[name].append(value.float())
        return {n: torch.cat(v) for n, v in parts.items()}

    def labels_for(self, rows: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
        values = live if (live is not None and self.config.targets != "fixed") else self.targets.values[rows].to(self.device)
        return self.targets.labels(values, self.config.task)

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.task == "classification":
            return F.cross_entropy(output, labels)
        if self.config.regression_loss == "normalized":
            return normalized_mse(output, labels)
        return F.mse_loss(output, labels)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.head.train()  # the language model stays in eval mode: no dropout noise in its own targets
        order = self.splits.train[torch.randperm(len(self.splits.train), generator=self.generator)]
        total, count = torch.zeros((), device=self.device), 0
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            batch = rows.to(self.device)
            output, live = self.model(self.ids[batch], self.last[batch], self.neuron)
            loss = self.loss(output, self.labels_for(rows, live))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.step += 1
            if self.config.track_gradients and self.step % self.config.gradient_interval == 0:
                self.gradient_log.append({"step": self.step, "norms": gradient_norms(self.model.bridge)})
            self.optimizer.step()
            total += loss.detach() * len(rows)
            count += len(rows)
        return {"train/loss": float(total) / count}

    @torch.no_grad()
    def predict(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs and live target values for ``rows``."""
        self.model.eval()
        outputs, lives = [], []
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64].to(self.device)
            output, live = self.model(self.ids[batch], self.last[batch], self.neuron)
            outputs.append(output)
            lives.append(live)
        return torch.cat(outputs), torch.cat(lives)

    def evaluate(self, epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for split, rows in (("val", self.splits.val), ("test", self.splits.test)):
            output, live = self.predict(rows)
            labels = self.labels_for(rows, live)
            metrics[f"{split}/loss"] = float(self.loss(output, labels))
            if self.config.task == "regression":
                truth = live if self.config.targets != "fixed" else self.targets.values[rows].to(self.device)
                activation = output * self.targets.std + self.targets.mean  # back in activation units
                metrics.update(self.floored_regression_metrics(split, activation, truth, self.targets.values[rows]))
            else:
                metrics[f"{split}/acc"] = float((output.argmax(-1) == labels).float().mean())
        if self.trainable and epoch % self.config.activation_interval == 0:
            metrics.update(self.drift(epoch))
        if self.trainable:
            metrics["lm/val_loss"] = self.language_model_loss(self.splits.val)  # what changing the model cost it
        return metrics

    def floored_regression_metrics(self, split: str, prediction: torch.Tensor, truth: torch.Tensor,
                                   original: torch.Tensor) -> dict[str, float]:
        """R², r and MSE while the target keeps at least ``variance_floor`` of its original variance.

        R² against a target with no variance left is undefined, not a score: below the floor only
        ``{split}/variance_collapsed`` = 1 is logged, and selection sees ``{split}/r2_floored`` = -1
        (no better than predicting a constant), so a silenced neuron is never the best checkpoint.
        """
        collapsed = float(truth.double().var()) < self.config.variance_floor * float(original.double().var())
        metrics = {f"{split}/variance_collapsed": float(collapsed)}
        if collapsed:
            metrics[f"{split}/r2_floored"] = -1.0
            return metrics
        scores = regression_metrics(prediction, truth)
        metrics.update({f"{split}/{k}": v for k, v in scores.items()})
        metrics[f"{split}/r2_floored"] = scores["r2"]
        return metrics

    @torch.no_grad()
    def language_model_loss(self, rows: torch.Tensor) -> float:
        """Next-token cross-entropy of the (possibly changed) language model on ``rows``' real tokens."""
        total, tokens = 0.0, 0
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64].to(self.device)
            mask = real_tokens(self.ids[batch], self.last[batch])
            count = int(mask[:, 1:].sum())
            total += float(lm_loss(self.model.bridge, self.ids[batch], mask)) * count
            tokens += count
        return total / max(tokens, 1)

    def drift(self, epoch: int) -> dict[str, float]:
        """How far the target neuron's distribution on validation texts moved from the original model's."""
        _, live = self.predict(self.splits.val)
        original = self.targets.values[self.splits.val]
        live = live.float().cpu()
        edges = np.histogram_bin_edges(original.numpy(), bins=20)
        histogram = np.histogram(np.clip(live.numpy(), edges[0], edges[-1]), bins=edges)[0] / len(live)
        entropy = histogram_entropy(histogram)
        if self.config.track_activations:
            self.activation_log.append({"epoch": epoch, "target": live.tolist(), "edges": edges.tolist(), "histogram": histogram.tolist()})
        return {
            "drift/variance": float(live.var()),
            "drift/entropy": entropy,
            "drift/ks": float(stats.ks_2samp(original.numpy(), live.numpy()).statistic),
        }

    def baselines(self, cross: LoadedModel | None) -> dict[str, float]:
        """Predicting the training mean, and frozen linear probes on this (and another) model's features."""
        values = self.targets.values
        train, val, test = self.splits.train, self.splits.val, self.splits.test
        original = values[val].numpy()
        metrics: dict[str, float] = {  # the target's original distribution, for the drift metrics
            "lm/val_loss_original": self.language_model_loss(val),
            "target/variance": float(values[val].var()),
            "target/entropy": histogram_entropy(np.histogram(original, bins=np.histogram_bin_edges(original, bins=20))[0] / len(original)),
        }
        if self.config.task == "regression":
            for split, rows in (("val", val), ("test", test)):
                metrics[f"baseline/mean/{split}_r2"] = regression_metrics(torch.full((len(rows),), values[train].mean()), values[rows])["r2"]
                probe = ridge_probe(self.original_features[train].double(), values[train].double(), self.original_features[rows].double())
                metrics[f"baseline/probe/{split}_r2"] = regression_metrics(probe, values[rows])["r2"]
        else:
            labels = self.targets.labels(values, "classification")
            majority = int(torch.mode(labels[train]).values)
            for split, rows in (("val", val), ("test", test)):
                metrics[f"baseline/majority/{split}_acc"] = float((labels[rows] == majority).float().mean())
        if cross is not None and self.config.task == "regression":
            ids, last = encode(cross.tokenizer, self.texts, self.device, self.config.max_length)
            name = resid_post(cross.n_layers - 1)
            features = torch.cat([unit_activations(cross.bridge, ids[s : s + 64], last[s : s + 64], [name], None, cross.n_layers)[name]
                                  for s in range(0, len(ids), 64)]).double()
            for split, rows in (("val", val), ("test", test)):
                probe = ridge_probe(features[train], values[train].double(), features[rows])
                metrics[f"baseline/cross_probe/{split}_r2"] = regression_metrics(probe, values[rows])["r2"]
        return metrics


def histogram_entropy(shares: np.ndarray) -> float:
    """Entropy (nats) of a histogram given as shares; values outside the original range are clipped
    into its end bins, so the original distribution and a drifted one are measured on one grid."""
    positive = shares[shares > 0]
    return float(-(positive * np.log(positive)).sum())


def gradient_norms(bridge: torch.nn.Module) -> dict[str, float]:
    """Gradient norm per (layer, component): embeddings, then attention and MLP of every block."""
    def norm(module: torch.nn.Module) -> float:
        grads = [p.grad.detach().pow(2).sum() for p in module.parameters() if p.grad is not None]
        return float(torch.sqrt(torch.stack(grads).sum())) if grads else 0.0

    norms = {"embeddings": norm(bridge.embed) + norm(bridge.pos_embed)}
    for i, block in enumerate(bridge.blocks):
        norms[f"blocks.{i}.attn"] = norm(block.attn)
        norms[f"blocks.{i}.mlp"] = norm(block.mlp)
    return norms


def run(config: IntrospectionConfig, *, nested: bool = False, progress: bool = True) -> str:
    """Scan, build the activation dataset, train the introspection head; return the run id."""
    from innerlens.viz import introspection as viz

    device = resolve_device(config.device)
    output_dir = check_output_dir(config.output_dir, config.force_overwrite) if config.output_dir else None
    models_root = tracking.models_root()
    experiment = IntrospectionExperiment(config, device, models_root)
    cross = load_model(config.cross_model, device, cache_root=models_root, seed=1) if config.cross_model else None
    with tracking.start_run(config, variant=f"{config.task}-{config.unfreeze}", run_name=f"{config.model}-L{experiment.layer}N{experiment.neuron}-s{config.seed}", nested=nested) as tracker:
        baselines = experiment.baselines(cross)
        if not config.resume:
            log_dataset(tracker, config, experiment)
            tracker.log_metrics(0, baselines)
        state = tracked_fit(
            experiment, tracker, config, max_epochs=config.max_epochs, progress=progress,
            selection=Selection(monitor=config.monitor, patience=config.patience, target_accuracy=config.target_accuracy, target_split=config.target_split),
        )
        tracker.log_metrics(state.step, at_best(metrics_at(state, state.best_step), baselines))
        if experiment.gradient_log:
            tracker.log_text(json.dumps(experiment.gradient_log), "monitors/gradients.json")
        if experiment.activation_log:
            tracker.log_text(json.dumps(experiment.activation_log), "monitors/activations.json")
        output, live = experiment.predict(experiment.splits.test)
        history = history_frame(state.history)
        for name, figure in viz.figures(config, experiment, history, output, live).items():
            tracker.log_figure(figure, name)
        tracker.flush()
        if output_dir is not None:
            write_local_copy(tracker.run_id, output_dir, config.force_overwrite)
        return tracker.run_id


def at_best(best: dict[str, float], baselines: dict[str, float]) -> dict[str, float]:
    """The validation-chosen checkpoint's scores, and the headline: its R² minus the frozen ridge
    probe's on the same features (``delta_vs_probe``), which says what training added to a readout."""
    summary = {f"{split}/{key}_at_best": best[f"{split}/{key}"] for split in ("val", "test")
               for key in ("r2", "acc", "variance_collapsed") if f"{split}/{key}" in best}
    for split in ("val", "test"):
        if f"{split}/r2" in best and f"baseline/probe/{split}_r2" in baselines:
            summary[f"{split}/delta_vs_probe"] = best[f"{split}/r2"] - baselines[f"baseline/probe/{split}_r2"]
    if "lm/val_loss" in best and "lm/val_loss_original" in baselines:
        summary["lm/val_loss_change_at_best"] = best["lm/val_loss"] - baselines["lm/val_loss_original"]
    return summary


def log_dataset(tracker: RunTracker, config: IntrospectionConfig, experiment: IntrospectionExperiment) -> None:
    """The activation dataset as CSV, the scan scores, and which unit was chosen."""
    split_of = {int(i): name for name, rows in experiment.splits.items() for i in rows}
    labels = experiment.targets.labels(experiment.targets.values, "classification")
    frame = pd.DataFrame(
        {
            "text": experiment.texts,
            "activation": experiment.targets.values.tolist(),
            "bin": labels.tolist(),
            "split": [split_of[i] for i in range(len(experiment.texts))],
            "model": config.model,
            "layer": experiment.layer,
            "neuron": experiment.neuron,
            "layer_type": config.layer_type,
            "token_position": config.token_position,
        }
    )
    tracker.log_text(frame.to_csv(index=False), "dataset/activations.csv")
    scan_frame = pd.DataFrame(
        [
            {"layer": layer, "neuron": unit, "variance": float(experiment.scan.variance[r, unit]),
             "range": float(experiment.scan.range[r, unit]), "combined": float(experiment.scan.combined[r, unit])}
            for r, layer in enumerate(experiment.scan.layers)
            for unit in range(experiment.scan.variance.shape[1])
        ]
    )
    tracker.log_text(scan_frame.to_csv(index=False), "dataset/scan_scores.csv")
    tracker.set_tags({"innerlens.layer": str(experiment.layer), "innerlens.neuron": str(experiment.neuron),
                      "innerlens.trainable_parameters": str(len(experiment.trainable))})
