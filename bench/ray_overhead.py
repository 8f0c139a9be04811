"""What the Ray executor costs: one 8-run sweep through the local executor and through Ray.

The sweep is the self-modeling comparison at tiny sizes (baseline x 8 seeds, no LLC), so each
run is short and the executor's own cost shows. Both executors get the same two CPUs: the local
one as two single-threaded worker processes, Ray as a head and a second node of one CPU each on
this machine (``ray.cluster_utils.Cluster``), one CPU per run. Measured in one process, one after
the other, against one SQLite store; the cluster's start is timed apart from the sweep. On a
two-core machine this measures overhead, not speed-up. Run: ``python bench/ray_overhead.py``;
results go to ``bench/results/ray_overhead.json``.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

RUNS = 8
TINY = dict(p=23, samples=400, n_layers=3, d_model=32, n_heads=4, d_mlp=64, batch_size=64, max_epochs=10,
            measure_llc=False, checkpoint_interval=0.0, device="cpu")


def sweep(executor: str, address: str | None) -> float:
    from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig, run_comparison

    config = SelfModelingComparisonConfig(variants=("baseline",), seeds=tuple(range(RUNS)), gamma_sensitivity=False,
                                          workers=2 if executor == "local" else None, executor=executor,
                                          ray_address=address, **TINY)
    start = time.perf_counter()
    run_comparison(config, progress=False)
    return time.perf_counter() - start


def main() -> None:
    import mlflow
    from ray.cluster_utils import Cluster

    store = Path(tempfile.mkdtemp(prefix="innerlens-ray-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("ray-overhead")
    local_s = sweep("local", None)
    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20))
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
        cluster_start_s = time.perf_counter() - start
        ray_s = sweep("ray", cluster.address)
    finally:
        cluster.shutdown()
    results = {
        "what": f"{RUNS}-run self-modeling sweep (baseline x {RUNS} seeds, tiny, 10 epochs, no LLC): local executor "
                "(2 workers x 1 thread) vs Ray (2 nodes x 1 CPU on this machine, 1 CPU per run)",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
        "local_s": local_s, "ray_s": ray_s, "ray_over_local": ray_s / local_s,
        "ray_overhead_per_run_s": (ray_s - local_s) / RUNS, "ray_cluster_start_s": cluster_start_s,
    }
    print(json.dumps(results, indent=2))
    (Path(__file__).parent / "results" / "ray_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
