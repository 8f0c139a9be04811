"""One self-modeling training epoch with AdamW's per-tensor loop, foreach ops, fused kernel and one flat buffer.

The default model (middle_layer, weight 0.01, every pair, minibatch 64: 103 steps) has 71 weight
tensors. PyTorch's default AdamW on a CPU updates them one after another; ``foreach`` applies each
op to all of them at once (what ``innerlens.engine.adamw`` uses on a CPU); ``fused`` is one kernel
(its choice on CUDA); ``flat`` is ``innerlens.engine.FlatAdamW``, every weight a view into one
buffer, so each op runs once (what the self-modeling and grokking families use). Each round builds
the four experiments from the same seed and trains one epoch of each, the order rotating; the ratios are medians over rounds, in one process on one torch
thread.

Run: ``python bench/adamw_kinds.py``; results go to ``bench/results/adamw_kinds.json``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.engine import FlatAdamW
from innerlens.families.self_modeling import SelfModelingExperiment

ROUNDS = 8


KINDS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}, "flat": {}}


def epoch_seconds(config: SelfModelingConfig, kind: str) -> float:
    experiment = SelfModelingExperiment(config, torch.device("cpu"))
    options = {"lr": config.lr, "weight_decay": config.weight_decay}
    experiment.optimizer = (FlatAdamW(experiment.model, torch.device("cpu"), **options) if kind == "flat" else
                            torch.optim.AdamW(experiment.model.parameters(), **options, **KINDS[kind]))
    start = time.perf_counter()
    experiment.train_round(1)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    config = SelfModelingConfig(variant="middle_layer", self_model_weight=0.01, device="cpu")
    rounds = []
    kinds = list(KINDS)
    for index in range(ROUNDS):
        order = kinds[index % len(kinds):] + kinds[: index % len(kinds)]
        rounds.append({f"{kind}_s": epoch_seconds(config, kind) for kind in order})
    result = {
        "what": "one training epoch of the default self-modeling model (middle_layer, minibatch 64): AdamW loop, foreach, fused, flat",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        "rounds": rounds,
        **{f"{kind}_speedup_over_loop": statistics.median(r["loop_s"] / r[f"{kind}_s"] for r in rounds) for kind in ("foreach", "fused", "flat")},
    }
    path = Path(__file__).parent / "results" / "adamw_kinds.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(", ".join(f"{kind} {result[f'{kind}_speedup_over_loop']:.2f}x" for kind in ("foreach", "fused", "flat")) + f" the loop ({path})")


if __name__ == "__main__":
    main()
