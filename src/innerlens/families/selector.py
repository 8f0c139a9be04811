"""Selector: a classifier head on a frozen generator's hidden states at two layers.

The generator runs once, only up to the deepest layer the head reads, and its hidden states are
cached: it is frozen, so every epoch would recompute the same numbers. The head (see
``models/selector_head.py``) trains with validation-based early stopping; the validation-best
head is calibrated (Platt, on validation logits), evaluated on test, registered in the Model
Registry, and its attention is drawn for chosen examples under the registered versions.
"""
from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from innerlens.analysis.calibration import calibration_metrics, platt_fit
from innerlens.configs.selector import REGISTERED_NAME, SelectorConfig
from innerlens.data.labelled import order_corpus, read_labelled
from innerlens.data.splits import split_indices
from innerlens.engine import FitResult, Selection, adamw, seed_everything
from innerlens.errors import ConfigError
from innerlens.inputs import read_input_text
from innerlens.models.hooks import resid_post
from innerlens.models.loading import LoadedModel, ModelCache, encode, load_model
from innerlens.models.selector_head import SelectorHead, valid_heads
from innerlens.plan import ModelRelease, Plan, RunLog


def default_layers(n_layers: int) -> tuple[int, int]:
    """About 1/6 and 1/2 of the depth, distinct."""
    low, high = round(n_layers / 6), n_layers // 2
    return (low, high) if low != high else (max(high - 1, 0), high) if high > 0 else (0, min(1, n_layers - 1))


class SelectorExperiment:
    def __init__(self, config: SelectorConfig, device: torch.device, models: ModelCache) -> None:
        seed_everything(config.seed)
        self.config, self.device = config, device
        self.frame = read_labelled(config.data) if config.data else order_corpus(config.num_texts, config.seed)
        self.generator_model: LoadedModel = load_model(config.generator, device, cache=models)
        n_layers = self.generator_model.n_layers
        self.layers = tuple(config.feature_layers) or default_layers(n_layers)
        for layer in self.layers:
            if not 0 <= layer < n_layers:
                raise ConfigError(f"--feature-layers {layer} is out of range: the generator has layers 0..{n_layers - 1}")
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError("--feature-layers must be distinct")
        self.heads = valid_heads(self.generator_model.d_model, config.heads)
        self.ids, self.last = encode(self.generator_model.tokenizer, self.frame["text"].tolist(), device, config.max_length)
        self.labels = torch.tensor(self.frame["label"].to_numpy(), device=device)
        self.features = self.hidden_states(self.ids, self.last)
        self.splits = split_indices(len(self.frame), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
        self.model = SelectorHead(self.generator_model.d_model, len(self.layers), self.heads, config.mlp_ratio, config.dropout).to(device)
        self.optimizer = adamw(self.model.parameters(), device, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)

    @torch.no_grad()
    def hidden_states(self, ids: torch.Tensor, last: torch.Tensor) -> list[torch.Tensor]:
        """Residual stream after each read layer, all positions; the generator stops after the deepest."""
        names = [resid_post(layer) for layer in self.layers]
        wanted = set(names)
        parts: list[list[torch.Tensor]] = [[] for _ in names]
        for start in range(0, len(ids), 64):
            _, cache = self.generator_model.bridge.run_with_cache(
                ids[start : start + 64], names_filter=lambda name: name in wanted, stop_at_layer=max(self.layers) + 1
            )
            for part, name in zip(parts, names):
                part.append(cache[name].float())
        return [torch.cat(part) for part in parts]

    def logits(self, rows: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        rows = rows.to(self.device)
        return self.model([f[rows] for f in self.features], self.last[rows])

    def train_round(self, epoch: int) -> dict[str, float]:
        self.model.train()
        order = self.splits.train[torch.randperm(len(self.splits.train), generator=self.generator)]
        total = torch.zeros((), device=self.device)
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start : start + self.config.batch_size]
            loss = F.cross_entropy(self.logits(rows)[0], self.labels[rows.to(self.device)])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(rows)
        return {"train/loss": float(total) / len(order)}

    @torch.no_grad()
    def scores(self, rows: torch.Tensor) -> torch.Tensor:
        """logit(class 1) − logit(class 0) per text."""
        self.model.eval()
        logits = torch.cat([self.logits(rows[s : s + 128])[0] for s in range(0, len(rows), 128)])
        return (logits[:, 1] - logits[:, 0]).cpu()

    def evaluate(self, epoch: int) -> dict[str, float]:
        metrics = {}
        for split in ("val", "test"):
            rows = getattr(self.splits, split)
            score, labels = self.scores(rows), self.labels[rows.to(self.device)].cpu()
            metrics[f"{split}/loss"] = float(F.binary_cross_entropy_with_logits(score, labels.float()))
            metrics[f"{split}/acc"] = float(((score > 0).long() == labels).float().mean())
            metrics[f"{split}/auc"] = float(roc_auc_score(labels.numpy(), score.numpy())) if labels.unique().numel() == 2 else 0.5
        return metrics


def bag_of_words_auc(frame: pd.DataFrame, train: torch.Tensor, test: torch.Tensor, ngrams: int = 1) -> float:
    """Test AUC of a logistic regression on word n-gram counts (1..``ngrams``). Unigrams are the
    baseline context-free features reach (at chance by construction: which names occur says nothing of
    their order); bigrams see local order ("alice met", "met bob"), the control that shows how hard the task is."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(ngram_range=(1, ngrams))
    x_train = vectorizer.fit_transform(frame["text"].iloc[train.numpy()])
    model = LogisticRegression(max_iter=2000).fit(x_train, frame["label"].iloc[train.numpy()])
    x_test = vectorizer.transform(frame["text"].iloc[test.numpy()])
    return float(roc_auc_score(frame["label"].iloc[test.numpy()], model.predict_proba(x_test)[:, 1]))


@dataclass
class SelectorPlan(Plan):
    """A selector run, the texts whose attention it draws and the generator's version."""

    examples: list[tuple[str, str]] = field(default_factory=list)
    generator_version: str = ""


def build(config: SelectorConfig, device: torch.device, *, models: ModelCache) -> SelectorPlan:
    """The head on the frozen generator's hidden states; the validation AUC chooses."""
    experiment = SelectorExperiment(config, device, models)
    version = experiment.generator_model.version or Path(config.generator).name
    return SelectorPlan(
        experiment, variant=f"L{'-'.join(map(str, experiment.layers))}", run_name=f"selector-{version}-s{config.seed}",
        selection=Selection(monitor="val/auc", patience=config.patience, target_accuracy=config.target_accuracy,
                            target_split=config.target_split),
        rounds=config.max_epochs, examples=_examples(config, experiment), generator_version=version,
        release=ModelRelease("selector", REGISTERED_NAME, functools.partial(write_head, experiment), register=config.register),
        tags={"innerlens.generator_version": version, "innerlens.heads": str(experiment.heads),
              "innerlens.feature_layers": ",".join(map(str, experiment.layers))})


def report(tracker: RunLog, plan: SelectorPlan, fit: FitResult) -> None:
    """Test AUC and calibration of the validation-best head, its evaluation plots and heatmaps (named by the registered version)."""
    from innerlens.viz import selector as viz

    experiment: SelectorExperiment = plan.experiment
    config, device = experiment.config, experiment.device
    assert fit.best_state is not None
    experiment.model.load_state_dict(fit.best_state)
    val, test = experiment.splits.val, experiment.splits.test
    test_labels = experiment.labels[test.to(device)].cpu().numpy()
    test_scores = experiment.scores(test)
    probabilities = torch.sigmoid(test_scores).numpy()
    final = {"test/auc_best": float(roc_auc_score(test_labels, test_scores.numpy())),
             **calibration_metrics("test/ece", probabilities, test_labels),
             "baseline/bow/test_auc": bag_of_words_auc(experiment.frame, experiment.splits.train, test),
             "baseline/bigram/test_auc": bag_of_words_auc(experiment.frame, experiment.splits.train, test, ngrams=2)}
    if config.calibrate:
        a, b = platt_fit(experiment.scores(val), experiment.labels[val.to(device)].cpu())
        probabilities = torch.sigmoid(a * test_scores.double() + b).numpy()
        final.update({"calibration/a": a, "calibration/b": b, **calibration_metrics("test/ece_calibrated", probabilities, test_labels)})
        # Stated, not hidden: the validation split that chose the checkpoint also fits Platt's (a, b).
        tracker.set_tags({"innerlens.calibration_split": "val (also the early-stopping split)"})
    tracker.log_metrics(fit.state.step, final)
    tracker.log_figure(viz.evaluation(test_labels, probabilities), "evaluation")
    selector_version = plan.registered_version or "unregistered"
    for name, text in plan.examples:
        ids, last = encode(experiment.generator_model.tokenizer, [text], device, config.max_length)
        experiment.model.eval()
        with torch.no_grad():
            _, weights = experiment.model(experiment.hidden_states(ids, last), last)
        tokens = [experiment.generator_model.tokenizer.decode([int(t)]) for t in ids[0, : int(last[0]) + 1]]
        stem = f"example_{name}_{plan.generator_version}_selector_{selector_version}"
        arrays = {f"h_select_h{layer}": w[0, :, : len(tokens)].cpu().numpy() for layer, w in zip(experiment.layers, weights)}
        tracker.log_figure(viz.attention_heatmap(tokens, arrays), f"heatmaps/{stem}")
        buffer = io.BytesIO()
        np.savez(buffer, tokens=np.array(tokens), **arrays)
        tracker.log_bytes(buffer.getvalue(), f"figures/heatmaps/{stem}.npz")  # redraw without rerunning


def _examples(config: SelectorConfig, experiment: SelectorExperiment) -> list[tuple[str, str]]:
    """(name, text) pairs to draw: the --examples file's lines or the first test texts."""
    if config.examples:
        texts = [line.strip() for line in read_input_text(config.examples, "--examples").splitlines() if line.strip()]
        return [(f"{i:02d}", text) for i, text in enumerate(texts)]
    rows = experiment.splits.test[: config.num_examples].tolist()
    return [(f"test{row}", experiment.frame["text"].iloc[row]) for row in rows]


def write_head(experiment: SelectorExperiment, fit: FitResult, folder: Path) -> None:
    """The validation-best head (weights and architecture) as the files ``selector/`` holds."""
    assert fit.best_state is not None
    experiment.model.load_state_dict(fit.best_state)
    torch.save(experiment.model.state_dict(), folder / "head.pt")
    (folder / "architecture.json").write_text(json.dumps({
        "d_model": experiment.generator_model.d_model, "feature_layers": list(experiment.layers),
        "heads": experiment.heads, "mlp_ratio": experiment.config.mlp_ratio, "generator": experiment.config.generator,
    }, indent=2))
