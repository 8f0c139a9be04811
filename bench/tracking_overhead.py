"""Time an epoch of the default self-modeling model with tracking on and off, in one process.

Each measurement is a fresh fit of ``--epochs`` epochs (a run's one-off final checkpoint
write is included, amortised over them) from the same seed (so both arms train
the same numbers and improve val/acc on the same epochs). Tracking on = the callbacks every run
uses with their defaults (metrics in one log_batch per epoch, or per second when epochs are
shorter; the best state snapshotted in memory when val/acc improves; best.pt and last.pt every
--checkpoint-interval seconds and at the final epoch), with the
background queue flushed inside the timed region so no work spills into the next measurement.
Each round times one fit off and one on, back to back, in alternating order; the overhead is
the median over rounds of the paired ratio on/off, which cancels the machine's slow drift
(shared CPUs here move a whole round by 20 % or more).

    python bench/tracking_overhead.py [--rounds 5] [--epochs 50]

Writes bench/results/tracking_overhead.json.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import click
import torch

from innerlens import tracking
from innerlens.callbacks import Checkpointer, MetricsLogger
from innerlens.engine import EngineState, Selection, fit
from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment


@click.command()
@click.option("--rounds", default=5, show_default=True, help="On/off pairs to time.")
@click.option("--epochs", default=50, show_default=True, help="Epochs per timed fit.")
@click.option("--output", default=str(Path(__file__).parent / "results" / "tracking_overhead.json"), show_default=True)
def main(rounds: int, epochs: int, output: str) -> None:
    store = tempfile.mkdtemp(prefix="innerlens-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "bench"
    tracking.configure_tracking()
    import mlflow

    mlflow.set_experiment("bench")
    config = SelfModelingConfig(llc_every=0, patience=0, max_epochs=epochs)
    selection = Selection(patience=0)

    def timed(tracker: tracking.RunTracker | None) -> float:
        experiment = SelfModelingExperiment(config, torch.device("cpu"))
        callbacks = (
            [MetricsLogger(tracker), Checkpointer(tracker, experiment, config, config.checkpoint_interval)]
            if tracker
            else []
        )
        start = time.perf_counter()
        fit(experiment, max_epochs=epochs, selection=selection, callbacks=callbacks, state=EngineState(), progress=False)
        if tracker is not None:
            tracker.flush()
        return (time.perf_counter() - start) / epochs

    off, on = [], []
    timed(None)  # warm-up
    for round_index in range(rounds):
        for arm in ("off", "on") if round_index % 2 == 0 else ("on", "off"):
            if arm == "off":
                off.append(timed(None))
                continue
            with tracking.start_run(config, variant=config.variant, run_name=f"bench-{round_index}") as tracker:
                on.append(timed(tracker))
    paired = [on_s / off_s for on_s, off_s in zip(on, off)]
    result = {
        "what": "seconds per epoch over a fresh fit, default self_modeling config (middle_layer, 3500 train examples), CPU",
        "rounds": rounds,
        "epochs_per_round": epochs,
        "epoch_s_tracking_off_median": statistics.median(off),
        "epoch_s_tracking_on_median": statistics.median(on),
        "overhead_ratio": statistics.median(paired) - 1.0,
        "paired_ratios": paired,
        "target_overhead_ratio": 0.02,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}",
        "off_samples": off,
        "on_samples": on,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(
        f"tracking off {result['epoch_s_tracking_off_median']:.4f} s/epoch, on {result['epoch_s_tracking_on_median']:.4f} "
        f"s/epoch: overhead {100 * result['overhead_ratio']:.2f}% (target < 2%) -> {output}"
    )


if __name__ == "__main__":
    main()
