"""What one LLC estimate costs next to the training it measures, per sampler and minibatch size,
and whether each setting still recovers a known answer.

All in one process, one torch thread (what a study worker gets), measured side by side:
- training: the default self-modeling run's epochs (middle_layer, every pair of modular_sum),
  timed over a few epochs and scaled to ``max_epochs``;
- one LLC estimate at the family's calibrated settings on that model's training set, with the
  vectorised sampler (all chains as one batched model) and devinterp's (chain after chain);
- calibration: the same settings on linear regression at the family's training-set size (λ = 5).

Run: ``python bench/llc_cost.py``; results go to ``bench/results/llc_cost.json``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from innerlens.analysis.known_llc import gaussian_nll_regression
from innerlens.analysis.llc import estimate_llc
from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

TIMED_EPOCHS = 3


def main() -> None:
    torch.set_num_threads(1)
    config = SelfModelingConfig(variant="middle_layer")
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    start = time.perf_counter()
    for epoch in range(1, TIMED_EPOCHS + 1):
        experiment.train_round(epoch)
        experiment.evaluate(epoch)
    epoch_s = (time.perf_counter() - start) / TIMED_EPOCHS
    training_s = epoch_s * config.max_epochs
    print(f"training: {epoch_s:.2f} s per epoch, {training_s:.0f} s for {config.max_epochs} epochs")

    x, y = experiment.data["train"]
    task_loss = lambda model, inputs, labels: F.cross_entropy(model(inputs), labels)  # noqa: E731
    defaults = config.llc_settings
    candidates = {
        "vectorised, batch 256": replace(defaults, sampler="vectorised"),
        "devinterp, batch 256 (default)": replace(defaults, sampler="devinterp"),
        "vectorised, batch 64": replace(defaults, sampler="vectorised", batch_size=64),
    }
    rows = []
    for name, settings in candidates.items():
        begin = time.perf_counter()
        estimate = estimate_llc(experiment.model, x, y, task_loss, settings, seed=0)
        seconds = time.perf_counter() - begin
        model, rx, ry, loss, answer = gaussian_nll_regression(config.train_size)
        known = [estimate_llc(model, rx, ry, loss, settings, seed=seed).mean for seed in range(3)]
        row = {"name": name, "settings": asdict(settings), "estimate_s": seconds, "training_s": training_s,
               "fraction_of_training_per_estimate": seconds / training_s, "estimates_per_run": 2,
               "llc_at_epoch_3": estimate.mean, "known_answer": answer, "known_estimates": known}
        rows.append(row)
        print(f"{name:34s} one estimate {seconds:6.1f} s = {seconds / training_s:5.2f} x training "
              f"(two per run: {2 * seconds / training_s:4.2f}); λ̂ on the known answer {answer}: "
              f"{', '.join(f'{k:.2f}' for k in known)}")
    out = Path(__file__).parent / "results" / "llc_cost.json"
    out.write_text(json.dumps({"epoch_s": epoch_s, "max_epochs": config.max_epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
