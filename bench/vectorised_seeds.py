"""Vectorised seeds: one training epoch of S seeds of the default self-modeling model, stacked
(:class:`innerlens.families.seed_stack.SeedStack`, what ``--stack-seeds`` runs) against the same S
seeds one after another (each experiment's own ``train_round``), side by side in one process.

Median of ``--rounds`` alternating rounds for S = 1, 4, 8, 16, with the largest difference between
the stacked and the sequential weights after the epoch (AdamW moves an element by about lr = 1e-3
whatever its gradient's size, so rounding in a near-zero gradient shows at that scale) and the
largest difference of the epoch's training loss. Run: ``python bench/vectorised_seeds.py [--device
cuda]``; results go to ``bench/results/vectorised_seeds_<device>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.families.seed_stack import SeedStack
from innerlens.families.self_modeling import SelfModelingExperiment


def experiments(seeds: int, device: torch.device, samples: int | None) -> list[SelfModelingExperiment]:
    base = SelfModelingConfig(variant="middle_layer", self_model_weight=0.01, samples=samples, device=str(device))
    return [SelfModelingExperiment(base.replace(seed=seed), device) for seed in range(seeds)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device: torch.device, work) -> tuple[float, object]:  # noqa: ANN001
    synchronize(device)
    start = time.perf_counter()
    out = work()
    synchronize(device)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", default="1,4,8,16")
    parser.add_argument("--samples", type=int, default=None, help="examples (default: every pair, the family's default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for seeds in [int(s) for s in args.seeds.split(",")]:
        times: dict[str, list[float]] = {"sequential": [], "stacked": []}
        weight_difference = loss_difference = 0.0
        for _ in range(args.rounds):  # alternate, so drift in the machine's speed hits both
            one_by_one, together = experiments(seeds, device, args.samples), experiments(seeds, device, args.samples)
            seconds, sequential = timed(device, lambda: [e.train_round(1) for e in one_by_one])
            times["sequential"].append(seconds)
            seconds, stacked = timed(device, lambda: SeedStack(seeds).train_epoch(together))
            times["stacked"].append(seconds)
            weight_difference = max(float((a - b).detach().abs().max()) for e, f in zip(one_by_one, together)
                                    for a, b in zip(e.model.parameters(), f.model.parameters()))
            loss_difference = max(abs(a["train/loss"] - b["train/loss"]) for a, b in zip(sequential, stacked))
        row = {"seeds": seeds, **{f"{k}_s": statistics.median(v) for k, v in times.items()},
               "max_abs_weight_difference": weight_difference, "max_abs_train_loss_difference": loss_difference}
        row["stacked_speedup"] = row["sequential_s"] / row["stacked_s"]
        rows.append(row)
        print(row, flush=True)
    results = {
        "what": f"one training epoch of the default self-modeling model (middle_layer, weight 0.01, minibatch 64, "
                f"{args.samples or 'every'} examples) per seed: S seeds stacked (SeedStack) vs one after another; "
                f"median of {args.rounds} alternating rounds",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
                   f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "python": platform.python_version(),
        "rows": rows,
    }
    out = Path(__file__).parent / "results" / f"vectorised_seeds_{device.type}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
