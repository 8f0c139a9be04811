"""Vectorised seeds: S seeds of the default self-modeling model trained as one stacked model
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``) against the same S seeds one
after another, per training step, side by side in one process.

Each seed keeps its own initialisation, data order and AdamW state (AdamW acts elementwise, so one
optimiser over the stacked tensors is S independent ones). Measured: the time of ``--steps`` steps (the first one, a warm-up, untimed)
at the default minibatch for S = 1, 4, 8, 16, median of ``--rounds`` alternating rounds, and the
largest difference between the stacked and the sequential parameters after the steps (AdamW's first steps move an element by
about lr = 1e-3 whatever its gradient's size, so rounding in a near-zero gradient shows at that scale). Run:
``python bench/vectorised_seeds.py [--device cuda]``; results go to
``bench/results/vectorised_seeds_<device>.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.families.self_modeling import SelfModelingNet, make_task


def models_and_batches(seeds: int, steps: int, device: torch.device) -> tuple[list[SelfModelingNet], torch.Tensor, torch.Tensor]:
    """S default-size middle_layer models (seeds 0..S-1) and each seed's own minibatches."""
    config = SelfModelingConfig(variant="middle_layer", self_model_weight=0.01, device=str(device))
    task = make_task(config)
    models = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        models.append(SelfModelingNet(config.replace(seed=seed), task, device))
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(len(task.y), (seeds, steps, config.batch_size), generator=generator)
    return models, task.x[index].to(device), task.y[index].to(device)


def loss_of(model: SelfModelingNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The family's training loss: task cross-entropy plus 0.01 x the self-model's MSE."""
    logits, pairs = model.forward_with_self_model(x)
    prediction, target = pairs[model.layers[0]]
    return F.cross_entropy(logits, y) + 0.01 * F.mse_loss(prediction, target)


def sequential(models: list[SelfModelingNet], xs: torch.Tensor, ys: torch.Tensor) -> float:
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01) for m in models]
    start = time.perf_counter()
    for step in range(xs.shape[1]):
        if step == 1:  # the first step warms up (allocations, vmap's tracing) and is not timed
            synchronize(xs.device)
            start = time.perf_counter()
        for seed, (model, optimizer) in enumerate(zip(models, optimizers)):
            optimizer.zero_grad(set_to_none=True)
            loss_of(model, xs[seed, step], ys[seed, step]).backward()
            optimizer.step()
    synchronize(xs.device)
    return time.perf_counter() - start


def stacked(models: list[SelfModelingNet], xs: torch.Tensor, ys: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    """S seeds as one model: vmapped gradients of the stacked parameters, one AdamW over them."""
    params, buffers = stack_module_state(models)
    params = {name: value.detach().requires_grad_() for name, value in params.items()}
    template = _LossModule(copy.deepcopy(models[0]).to("meta"))
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.01)

    def one_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        named = {f"model.{name}": value for name, value in {**p, **b}.items()}
        return functional_call(template, named, (x, y))

    gradients = vmap(grad(one_loss), randomness="different")
    start = time.perf_counter()
    for step in range(xs.shape[1]):
        if step == 1:
            synchronize(xs.device)
            start = time.perf_counter()
        for name, value in gradients(params, buffers, xs[:, step], ys[:, step]).items():
            params[name].grad = value
        optimizer.step()
    synchronize(xs.device)
    return time.perf_counter() - start, params


class _LossModule(torch.nn.Module):
    """The model with its training loss as ``forward``, so one ``functional_call`` computes it."""

    def __init__(self, model: SelfModelingNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_of(self.model, x, y)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", default="1,4,8,16")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for seeds in [int(s) for s in args.seeds.split(",")]:
        times: dict[str, list[float]] = {"sequential": [], "stacked": []}
        difference = 0.0
        for _ in range(args.rounds):  # alternate, so drift in the machine's speed hits both
            models, xs, ys = models_and_batches(seeds, args.steps, device)
            reference = copy.deepcopy(models)
            times["sequential"].append(sequential(reference, xs, ys))
            seconds, params = stacked(models, xs, ys)
            times["stacked"].append(seconds)
            expected, _ = stack_module_state(reference)
            difference = max(float((params[name] - expected[name]).detach().abs().max()) for name in expected)
        row = {"seeds": seeds, **{f"{k}_s": statistics.median(v) for k, v in times.items()},
               "max_abs_param_difference": difference}
        row["stacked_speedup"] = row["sequential_s"] / row["stacked_s"]
        rows.append(row)
        print(row, flush=True)
    results = {
        "what": f"{args.steps} training steps of the default self-modeling model (middle_layer, weight 0.01, "
                f"minibatch 64) per seed: S seeds stacked with torch.func vs one after another; median of "
                f"{args.rounds} alternating rounds",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} threads "
                   f"{torch.get_num_threads()}, device {device}"
                   + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "python": platform.python_version(),
        "rows": rows,
    }
    out = Path(__file__).parent / "results" / f"vectorised_seeds_{device.type}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
