"""``compare`` at a thousand runs: 1,000 runs x 5 metrics x 1,000 steps on a local ``mlflow server``.

Seeds the server's store with synthetic runs (10 groups x 100 seeds; metrics through MLflow's
own SQLAlchemy store, plus the ``history.parquet`` every family run logs), then times, against
the server over HTTP:

* the history fetch ``compare`` uses: one ``history.parquet`` per run, in parallel (target < 10 s);
* the same from the bulk metric API alone (runs without ``history.parquet``);
* ``compare`` end to end: query, fetch, statistics, figures, report, logging (target < 30 s);
* the naive loop: ``get_metric_history`` once per (run, metric), one after another.

    python bench/compare_thousand_runs.py [--runs 1000] [--steps 1000] [--store DIR]

Writes bench/results/compare_thousand_runs.json.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("train/loss", "val/loss", "train/acc", "val/acc", "test/acc")


def seed_store(directory: Path, runs: int, steps: int) -> None:
    """Runs as the families leave them: metrics in the store, ``history.parquet`` among the artifacts.

    Written through MLflow's own SQLAlchemy store into the database the server will serve (batches
    of 1,000 points, MLflow's limit); the parquet files go where the server's proxied artifact
    store keeps ``mlflow-artifacts:/bench/...``, so reading them goes through the server.
    """
    import pandas as pd
    from mlflow.entities import Metric, RunStatus, RunTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{directory / 'mlflow.db'}", str(directory / "artifacts"))
    experiment_id = store.create_experiment("bench", artifact_location="mlflow-artifacts:/bench")
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    for index in range(runs):
        group, seed = f"g{index % 10}", index // 10
        tags = [RunTag("innerlens.family", "synthetic"), RunTag("innerlens.variant", group), RunTag("innerlens.seed", str(seed))]
        run = store.create_run(experiment_id, "bench", now, tags, f"{group}-{seed}")
        curve = (index % 10) / 10 * (1 - np.exp(-np.arange(steps) / 200)) + rng.normal(0, 0.01, steps)
        for key in METRICS:
            store.log_batch(run.info.run_id, metrics=[Metric(key, float(v), now, step) for step, v in enumerate(curve)], params=[], tags=[])
        history = pd.DataFrame({"step": np.tile(np.arange(steps), len(METRICS)), "key": np.repeat(METRICS, steps),
                                "value": np.tile(curve, len(METRICS))})
        target = directory / "artifacts" / "bench" / run.info.run_id / "artifacts"
        target.mkdir(parents=True)
        history.to_parquet(target / "history.parquet", index=False)
        store.update_run_info(run.info.run_id, RunStatus.FINISHED, now, None)
    (directory / "seeded").write_text(f"{runs} {steps}\n")


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


@click.command()
@click.option("--runs", default=1000, show_default=True)
@click.option("--steps", default=1000, show_default=True)
@click.option("--store", default=None, help="Directory of a store seeded before (reused), or where to seed one.")
@click.option("--output", default=str(Path(__file__).parent / "results" / "compare_thousand_runs.json"), show_default=True)
def main(runs: int, steps: int, store: str | None, output: str) -> None:
    directory = Path(store) if store else Path(tempfile.mkdtemp(prefix="innerlens-compare-bench-"))
    seed_s = 0.0
    if not (directory / "seeded").exists():
        directory.mkdir(parents=True, exist_ok=True)
        seed_s, _ = timed(lambda: seed_store(directory, runs, steps))
    script = ROOT / "deploy" / "local-server"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's mlflow
    subprocess.run([str(script), "start", str(directory), "5057"], check=True)
    try:
        os.environ["MLFLOW_TRACKING_URI"] = (directory / "server.url").read_text().strip()
        import mlflow
        from mlflow.tracking import MlflowClient

        from innerlens.drivers.compare import CompareConfig, run
        from innerlens.tracking import fetch_histories

        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        client = MlflowClient()
        experiment = client.get_experiment_by_name("bench").experiment_id
        selected = client.search_runs([experiment], max_results=10_000)
        expected = len(selected) * steps * len(METRICS)
        fetch_s, history = timed(lambda: fetch_histories(client, selected, list(METRICS)))
        assert len(history) == expected, (len(history), expected)
        bulk_s, bulk = timed(lambda: fetch_histories(client, selected, list(METRICS), history_artifacts=False))
        assert len(bulk) == expected
        end_to_end_s, _ = timed(lambda: run(CompareConfig(experiments=("bench",), metrics=METRICS), progress=False))
        naive_s, naive_points = timed(lambda: sum(len(client.get_metric_history(r.info.run_id, key)) for r in selected for key in METRICS))
        assert naive_points == expected
    finally:
        subprocess.run([str(script), "stop", str(directory)], check=False)
    result = {
        "what": f"{len(selected)} runs x {len(METRICS)} metrics x {steps} steps on a local mlflow server (SQLite backend, 2 workers, proxied artifacts)",
        "seed_store_s": seed_s,
        "fetch_s": fetch_s,
        "fetch_how": "compare's fetch: each run's history.parquet, 16 downloads in parallel",
        "fetch_target_s": 10,
        "bulk_metric_api_fetch_s": bulk_s,
        "compare_end_to_end_s": end_to_end_s,
        "compare_target_s": 30,
        "naive_per_run_loop_s": naive_s,
        "naive_how": "get_metric_history once per (run, metric), sequentially",
        "speedup_fetch_vs_naive": naive_s / fetch_s,
        "points": expected,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
