"""Generator: fine-tune (or train) a TransformerLens language model on a text corpus, measure the
gradient noise scale, and register the result in the MLflow Model Registry.

The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018) uses their unbiased
two-batch-size estimate: squared gradient norms |G_b|², |G_B|² at batch sizes b < B give
|G|² ≈ (B|G_B|² − b|G_b|²)/(B − b) and tr(Σ) ≈ (|G_b|² − |G_B|²)/(1/b − 1/B).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from innerlens.analysis.noise_scale import noise_scale
from innerlens.configs.generator import REGISTERED_NAME, GeneratorConfig
from innerlens.data.splits import split_indices
from innerlens.data.texts import generate_texts, read_texts
from innerlens.engine import FitResult, Selection, adamw, history_frame, seed_everything
from innerlens.errors import ConfigError
from innerlens.models.loading import ModelCache, encode, lm_loss, load_model, real_tokens, save_checkpoint_dir
from innerlens.plan import ModelRelease, Plan, RunLog
from innerlens.viz.curves import metric_curves


def squared_grad_norm(bridge: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> float:
    bridge.zero_grad(set_to_none=True)
    lm_loss(bridge, ids, mask).backward()
    norm = sum(float(p.grad.pow(2).sum()) for p in bridge.parameters() if p.grad is not None)
    bridge.zero_grad(set_to_none=True)
    return norm


class GeneratorExperiment:
    def __init__(self, config: GeneratorConfig, device: torch.device, models: ModelCache) -> None:
        seed_everything(config.seed)
        self.config, self.device = config, device
        texts = read_texts(config.corpus, "--corpus") if config.corpus else generate_texts(config.num_texts, config.seed + 7)
        self.loaded = load_model(config.model, device, cache=models)
        self.model = self.loaded.bridge
        self.ids, last = encode(self.loaded.tokenizer, texts, device, config.max_length)
        self.mask = real_tokens(self.ids, last)
        self.splits = split_indices(len(texts), (config.train_fraction, config.val_fraction, config.test_fraction), config.seed)
        if len(self.splits.train) < config.batch_size * config.big_batch_factor:
            raise ConfigError(f"{len(self.splits.train)} training texts are fewer than the noise-scale batch "
                              f"({config.batch_size} x {config.big_batch_factor}); use more texts or a smaller --batch-size")
        self.optimizer = adamw(self.model.parameters(), device, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)

    def sample(self, size: int) -> torch.Tensor:
        return self.splits.train[torch.randperm(len(self.splits.train), generator=self.generator)[:size]].to(self.device)

    def train_round(self, round_index: int) -> dict[str, float]:
        self.model.train()
        total = torch.zeros((), device=self.device)
        for _ in range(self.config.eval_every):
            rows = self.sample(self.config.batch_size)
            loss = lm_loss(self.model, self.ids[rows], self.mask[rows])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        return {"train/loss": float(total) / self.config.eval_every}

    def evaluate(self, round_index: int) -> dict[str, float]:
        self.model.eval()
        metrics = {}
        with torch.no_grad():
            for split in ("val", "test"):
                rows = getattr(self.splits, split).to(self.device)
                losses = [float(lm_loss(self.model, self.ids[rows[s : s + 64]], self.mask[rows[s : s + 64]])) for s in range(0, len(rows), 64)]
                metrics[f"{split}/loss"] = sum(losses) / len(losses)
        b, big_b = self.config.batch_size, self.config.batch_size * self.config.big_batch_factor
        small, big = [], []
        for _ in range(self.config.gns_draws):  # the moments are averaged over draws, then divided
            rows = self.sample(big_b)
            small.append(squared_grad_norm(self.model, self.ids[rows[:b]], self.mask[rows[:b]]))
            big.append(squared_grad_norm(self.model, self.ids[rows], self.mask[rows]))
        metrics.update(noise_scale(small, big, b, big_b))
        return metrics


def build(config: GeneratorConfig, device: torch.device, *, models: ModelCache) -> Plan:
    """Step-based: one engine round = ``eval_every`` steps; the validation loss chooses the weights published as ``model/``."""
    experiment = GeneratorExperiment(config, device, models)
    return Plan(experiment, variant=config.model, run_name=f"generator-{Path(config.model).name}-s{config.seed}",
                selection=Selection(monitor="val/loss", mode="min", patience=config.patience),
                rounds=config.rounds, steps_per_round=config.eval_every, step_unit="step",
                release=ModelRelease("model", REGISTERED_NAME, functools.partial(write_model, experiment),
                                     register=config.register))


def report(tracker: RunLog, plan: Plan, fit: FitResult) -> None:
    """The loss and noise-scale curves (the session has logged the validation-best weights as ``model/``)."""
    history = history_frame(fit.state.history).assign(run="generator")
    tracker.log_figure(metric_curves(history, ["train/loss", "val/loss", "test/loss"], group="run", title="Language-model loss", xlabel="step"), "loss")
    tracker.log_figure(metric_curves(history, ["gns/b_simple", "gns/grad_sq", "gns/trace"], group="run", title="Gradient noise scale (McCandlish et al. 2018)", xlabel="step"), "gradient_noise_scale")


def write_model(experiment: GeneratorExperiment, fit: FitResult, folder: Path) -> None:
    """The validation-best weights as a loadable checkpoint folder (``model/``)."""
    assert fit.best_state is not None
    experiment.model.load_state_dict(fit.best_state)
    save_checkpoint_dir(experiment.loaded, folder)
