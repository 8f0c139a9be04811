"""Pilot: a self-modeling regime where the baseline generalizes stably on every seed.

For each candidate setting, trains the baseline (no self-model) for seeds 0-4 without tracking
and records, per seed, the epoch val accuracy first reached 0.95, the best val accuracy and
whether training collapsed: after train accuracy first reaches 0.99, does it ever fall below
0.9? Runs go to a pool of single-threaded worker processes (the study's own executor). Run:
``python bench/self_modeling_regime_pilot.py``; results in ``bench/results/self_modeling_regime_pilot.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from innerlens.analysis.transitions import collapsed
from innerlens.drivers.executor import default_workers
from innerlens.drivers.local_executor import LocalExecutor
from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

CANDIDATES = {
    "defaults (lr 1e-3, batch 256), 150 epochs": {"max_epochs": 150},
    "lr 3e-3, batch 256, 150 epochs": {"lr": 3e-3, "max_epochs": 150},
    "lr 1e-3, batch 64, 100 epochs": {"batch_size": 64, "max_epochs": 100},
}
SEEDS = (0, 1, 2, 3, 4)


def pilot(overrides: dict, seed: int) -> dict:
    config = SelfModelingConfig(variant="baseline", seed=seed, device="cpu", **overrides)
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    train_acc, val_acc = [], []
    start = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        train_acc.append(experiment.train_round(epoch)["train/acc"])
        val_acc.append(experiment.evaluate(epoch)["val/acc"])
    reached = next((i + 1 for i, a in enumerate(val_acc) if a >= 0.95), None)
    return {"seed": seed, "epoch_val_acc_0.95": reached, "best_val_acc": max(val_acc), "final_val_acc": val_acc[-1], "collapsed": collapsed(train_acc),
            "epoch_train_acc_0.99": next((i + 1 for i, a in enumerate(train_acc) if a >= 0.99), None),
            "seconds_per_epoch": (time.perf_counter() - start) / config.max_epochs, "val_acc": val_acc, "train_acc": train_acc}


def _pilot(task: tuple[dict, int]) -> dict:
    return pilot(*task)


def main() -> None:
    torch.set_num_threads(1)
    jobs = [(f"{name} seed {seed}", (overrides, seed)) for name, overrides in CANDIDATES.items() for seed in SEEDS]
    done = iter(LocalExecutor(*default_workers()).run(_pilot, jobs))
    results = {}
    for name, overrides in CANDIDATES.items():
        runs = [next(done).value for _ in SEEDS]
        stable = all(r["best_val_acc"] >= 0.95 and not r["collapsed"] for r in runs)
        results[name] = {"overrides": overrides, "stable_on_every_seed": stable, "runs": runs}
        reached = ", ".join(str(r["epoch_val_acc_0.95"] or "never") for r in runs)
        best = ", ".join(f"{r['best_val_acc']:.3f}" for r in runs)
        print(f"{name:45s} val >= 0.95 at epoch {reached}; best val acc {best}; "
              f"collapsed {sum(r['collapsed'] for r in runs)}/5; {runs[0]['seconds_per_epoch']:.2f} s/epoch; stable: {stable}")
    (Path(__file__).parent / "results" / "self_modeling_regime_pilot.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
