"""The published grokking setup (Nanda et al. 2023: p=113, 30 % train, wd 1.0, full batch) against
a minimal plain-PyTorch loop of the same model and optimiser, in one process.

Part A (throughput, alternating to cancel drift): steps per second of `innerlens grokking`
with tracking on (metrics every 100 steps, analyses every 1000, snapshots, checkpoints) and of
the plain loop as the paper's code writes it (every step: full-batch train step, then the
held-out loss, both read back with .item()). Part B: one innerlens run until val accuracy
>= 0.99 (validation steers; test is reported), with wall time and the step of each phase.

    python bench/grokking_published.py [--rounds 3] [--max-steps 30000]

Writes bench/results/grokking_published.json.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from innerlens import session
from innerlens.families.grokking import GrokkingConfig, GrokkingExperiment


def plain_loop_steps_per_s(config: GrokkingConfig, steps: int) -> float:
    """Nanda et al.'s loop: train step and held-out loss every step, values read back each step."""
    experiment = GrokkingExperiment(config, torch.device("cpu"))  # same data, model and optimiser
    model, optimizer = experiment.model, experiment.optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(step / config.warmup_steps, 1.0))
    (x, y), (hx, hy) = experiment.data["train"], experiment.data["val"]
    train_losses, heldout_losses = [], []
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x)[:, -1].to(torch.float64), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        with torch.inference_mode():
            heldout = F.cross_entropy(model(hx)[:, -1].to(torch.float64), hy)
        train_losses.append(loss.item())
        heldout_losses.append(heldout.item())
    return steps / (time.perf_counter() - start)


def innerlens_steps_per_s(config: GrokkingConfig) -> float:
    start = time.perf_counter()
    session.run("grokking", config, progress=False)
    return config.max_steps / (time.perf_counter() - start)


@click.command()
@click.option("--rounds", default=3, show_default=True, help="Alternating throughput rounds.")
@click.option("--round-steps", default=1000, show_default=True, help="innerlens steps per throughput round.")
@click.option("--plain-steps", default=200, show_default=True, help="Plain-loop steps per throughput round.")
@click.option("--max-steps", default=30000, show_default=True, help="Cap for the run to val acc >= 0.99.")
@click.option("--parts", default="throughput,published", show_default=True, help="Which parts to run (results of the others are kept).")
@click.option("--output", default=str(Path(__file__).parent / "results" / "grokking_published.json"), show_default=True)
def main(rounds: int, round_steps: int, plain_steps: int, max_steps: int, parts: str, output: str) -> None:
    store = tempfile.mkdtemp(prefix="innerlens-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "bench-grokking"
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("bench-grokking")
    published = GrokkingConfig(device="cpu")
    result = json.loads(Path(output).read_text()) if Path(output).exists() else {}
    result.update({
        "what": "Nanda et al. 2023 setup (p=113, add, train 0.3, d_model 128, 1 layer, AdamW lr 1e-3 wd 1.0, full batch), CPU",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(),
    })
    if "throughput" in parts:
        result["throughput"] = throughput(published, rounds, round_steps, plain_steps)
    if "published" in parts:
        result["published_run"] = published_run(published, max_steps)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


def throughput(published: GrokkingConfig, rounds: int, round_steps: int, plain_steps: int) -> dict:
    """Alternating rounds of the plain loop and innerlens (tracking on), steps per second."""
    config = published.replace(max_steps=round_steps, dashboard=False)
    plain, ours = [], []
    for _ in range(rounds):
        plain.append(plain_loop_steps_per_s(published, plain_steps))
        ours.append(innerlens_steps_per_s(config))
        click.echo(f"plain {plain[-1]:.2f} steps/s, innerlens {ours[-1]:.2f} steps/s", err=True)
    return {
        "plain_loop_steps_per_s": plain,
        "innerlens_tracking_on_steps_per_s": ours,
        "speedup_median": sorted(o / p for o, p in zip(ours, plain))[len(plain) // 2],
        "target_speedup": 1.5,
        "plain_loop": "per step: full-batch train step, held-out loss, both .item() (the paper's loop)",
        }


def published_run(published: GrokkingConfig, max_steps: int) -> dict:
    """One run of the published setup until val accuracy >= 0.99 (or max_steps)."""
    import mlflow

    start = time.perf_counter()
    run_id = session.run("grokking", published.replace(max_steps=max_steps, target_accuracy=0.99), progress=False).run_id
    wall = time.perf_counter() - start
    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    steps_done = max(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "val/acc"))
    return {
        "run_id": run_id,
        "wall_s": wall,
        "steps": steps_done,
        "steps_per_s": steps_done / wall,
        "reached_val_acc_0.99": metrics.get("grok/generalization_step", -1) >= 0,
        "final_test_acc": metrics.get("test/acc"),
        **{k: v for k, v in metrics.items() if k.startswith("grok/") and "key_frequency" not in k},
        "key_frequencies": sorted(int(v) for k, v in metrics.items() if k.startswith("grok/key_frequency")),
    }


if __name__ == "__main__":
    main()
