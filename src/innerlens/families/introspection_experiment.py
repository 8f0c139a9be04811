"""The engine's view of one introspection run: texts, the scanned target neuron and its labels,
the model and head, training with fixed or live targets, baselines and drift monitors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from innerlens.analysis.neurons import ScanResult, scan, unit_activations
from innerlens.analysis.probes import gradient_norms, histogram_entropy, normalized_mse, regression_metrics, ridge_probe
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.data.splits import split_indices
from innerlens.data.texts import generate_texts, read_texts
from innerlens.engine import adamw, seed_everything
from innerlens.errors import ConfigError
from innerlens.families.introspection_setup import check_against_model, check_layers, feature_layer_for, trainable_parameters
from innerlens.models.hooks import activation, attention_out, hook_layer, resid_post, residual_after
from innerlens.models.introspection_head import IntrospectionHead, Predictor, at_position
from innerlens.models.loading import LoadedModel, ModelCache, declared_layers, encode, lm_loss, load_model, real_tokens

if TYPE_CHECKING:
    pass


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


class IntrospectionExperiment:
    def __init__(self, config: IntrospectionConfig, device: torch.device, models: ModelCache) -> None:
        seed_everything(config.seed)
        self.config, self.device = config, device
        self.texts = read_texts(config.texts) if config.texts else generate_texts(config.num_samples, config.seed)
        check_layers(config, declared_layers(config.model))  # before loading, which can take minutes
        self.loaded = load_model(config.model, device, cache=models, seed=0)
        bridge = self.loaded.bridge
        self.ids, self.last = encode(self.loaded.tokenizer, self.texts, device, config.max_length)
        check_against_model(config, self.loaded, int(self.last.min()) + 1)
        self.splits = split_indices(len(self.texts), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
        if min(len(self.splits.val), len(self.splits.test)) < 2:
            raise ConfigError(f"{len(self.texts)} texts leave fewer than 2 validation or test texts; use more texts")
        layers = [config.layer] if config.layer is not None else list(range(self.loaded.n_layers))
        train = self.splits.train  # the scanner never sees validation or test texts
        self.scan: ScanResult = scan(bridge, self.ids[train], self.last[train], layer_type=config.layer_type, layers=layers,
                                     names=[activation(config.layer_type, layer) for layer in layers], position=config.position,
                                     select=at_position)
        self.layer, self.neuron = (config.layer, config.neuron) if config.neuron is not None else self.scan.best(config.layer)
        self.target_hook = activation(config.layer_type, self.layer)
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
        self.optimizer = adamw(groups, device, weight_decay=config.weight_decay)
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
            for name, value in unit_activations(bridge, self.ids[batch], self.last[batch], names, self.config.position, stop,
                                                at_position).items():
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

    def train_round(self, epoch: int) -> dict[str, float]:
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

    @torch.no_grad()
    def refit_probe(self) -> dict[str, float]:
        """A ridge probe refitted on the model's features *now* and the targets it is scored on now (the live
        neuron with --targets live|live_gradient, else the fixed values), on the same split: a head trained
        against a moving target is compared with what a linear readout of the final network gets, not with
        a probe of the original network on the original targets."""
        if self.config.task != "regression":
            return {}
        feature_hook = residual_after(self.feature_layer)
        current = self.activations(self.loaded.bridge, list(dict.fromkeys([feature_hook, self.target_hook])))
        features = current[feature_hook].double()
        values = (current[self.target_hook][:, self.neuron] if self.config.targets != "fixed" else self.targets.values).double()
        train = self.splits.train
        metrics = {}
        for split, rows in (("val", self.splits.val), ("test", self.splits.test)):
            probe = ridge_probe(features[train], values[train], features[rows])
            metrics[f"baseline/refit_probe/{split}_r2"] = regression_metrics(probe, values[rows])["r2"]
        return metrics

    @torch.no_grad()
    def attention_share(self) -> float:
        """Share of the target neuron's variance on validation texts that reaches it through its own block's
        attention, at the token: Var(target - target with ``blocks.L.hook_attn_out`` mean-ablated there) /
        Var(target). The head reads the residual stream below that block at the same token, so this is
        the part it can only predict, not read; a model that makes its neuron easier to predict might
        shrink it."""
        rows, position, attention = self.splits.val, self.config.position, attention_out(self.layer)
        bridge = self.loaded.bridge
        captured = self.activations(bridge, [attention, self.target_hook], rows)
        mean = captured[attention].mean(0).to(self.device)
        ablated: list[torch.Tensor] = []
        for start in range(0, len(rows), 64):
            batch = rows[start : start + 64].to(self.device)
            last = self.last[batch]
            index = last if position is None else torch.full_like(last, position)

            def replace(value: torch.Tensor, hook: Any) -> torch.Tensor:
                value = value.clone()
                value[torch.arange(len(batch), device=value.device), index] = mean.to(value.dtype)
                return value

            def keep(value: torch.Tensor, hook: Any) -> None:
                ablated.append(at_position(value, last, position)[:, self.neuron].float().cpu())

            bridge.run_with_hooks(self.ids[batch], fwd_hooks=[(attention, replace), (self.target_hook, keep)],
                                  stop_at_layer=self.layer + 1)
        target = captured[self.target_hook][:, self.neuron].cpu()
        return float((target - torch.cat(ablated)).var() / target.var().clamp_min(1e-12))

    def baselines(self, cross: LoadedModel | None) -> dict[str, float]:
        """Predicting the training mean, and frozen linear probes on this (and another) model's features."""
        values = self.targets.values
        train, val, test = self.splits.train, self.splits.val, self.splits.test
        original = values[val].numpy()
        metrics: dict[str, float] = {  # the target's original distribution, for the drift metrics
            "lm/val_loss_original": self.language_model_loss(val),
            "target/attention_share": self.attention_share(),
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
            features = torch.cat([unit_activations(cross.bridge, ids[s : s + 64], last[s : s + 64], [name], None, cross.n_layers, at_position)[name]
                                  for s in range(0, len(ids), 64)]).double()
            for split, rows in (("val", val), ("test", test)):
                probe = ridge_probe(features[train], values[train].double(), features[rows])
                metrics[f"baseline/cross_probe/{split}_r2"] = regression_metrics(probe, values[rows])["r2"]
        return metrics
