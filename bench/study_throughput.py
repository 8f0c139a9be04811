"""Study throughput: the demo study run sequentially (one process, every core's threads) and on the
local executor's pool (one single-threaded worker per core), side by side in one process.

The study has the demo's shape (``make demo``): baseline and middle_layer at weight 0.01, seeds
0-4, the default model, data and minibatch, the LLC at the calibrated ε, γ, chains and minibatch.
To keep the bench short, each run trains ``--epochs`` epochs and its LLC chains take ``--draws``
draws after ``--burnin`` steps (the full demo: 100 epochs, 500 + 200); the operations are the same,
so the ratio is the demo's. Run: ``python bench/study_throughput.py``; results go to
``bench/results/study_throughput.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def study(workers: int, epochs: int, draws: int, burnin: int) -> tuple[float, int]:
    """Wall seconds of one comparison, and how many runs it trained."""
    from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig, run_comparison

    config = SelfModelingComparisonConfig(variants=("baseline", "middle_layer"), self_model_weights=(0.01,),
                                          seeds=(0, 1, 2, 3, 4), gamma_sensitivity=False, workers=workers,
                                          max_epochs=epochs, llc_draws=draws, llc_burnin=burnin, device="cpu")
    start = time.perf_counter()
    run_comparison(config, progress=False)
    return time.perf_counter() - start, len(config.single_runs())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--burnin", type=int, default=20)
    args = parser.parse_args()
    import mlflow

    store = Path(tempfile.mkdtemp(prefix="innerlens-throughput-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("study-throughput")
    cores = os.cpu_count() or 1
    sequential_s, runs = study(0, args.epochs, args.draws, args.burnin)
    parallel_s, _ = study(cores, args.epochs, args.draws, args.burnin)
    results = {
        "what": f"demo-shaped study ({runs} runs: baseline and middle_layer w=0.01, seeds 0-4, default model), "
                f"{args.epochs} epochs and LLC 4 chains x {args.draws} draws after {args.burnin} per run: "
                f"sequential (workers 0, {cores} torch threads) vs the pool ({cores} workers x 1 thread)",
        "machine": f"{platform.machine()} {cores} cores, python {platform.python_version()}",
        "sequential_s": sequential_s, "parallel_s": parallel_s,
        "sequential_runs_per_hour": 3600 * runs / sequential_s, "parallel_runs_per_hour": 3600 * runs / parallel_s,
        "parallel_speedup": sequential_s / parallel_s,
    }
    out = Path(__file__).parent / "results" / "study_throughput.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
