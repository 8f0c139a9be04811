"""Engine callbacks that record a fit in its MLflow run."""
from __future__ import annotations

from typing import Any

import pandas as pd

from innerlens.config import Config
from innerlens.engine import EngineState, Experiment, training_state
from innerlens.tracking import RunTracker


def history_frame(history: list[dict[str, float]]) -> pd.DataFrame:
    """Tidy (step, key, value) rows from the engine's per-epoch metric dicts."""
    rows = [
        {"step": int(entry["step"]), "key": key, "value": float(value)}
        for entry in history
        for key, value in entry.items()
        if key != "step"
    ]
    return pd.DataFrame(rows, columns=["step", "key", "value"])


class MetricsLogger:
    """One ``log_batch`` per epoch with every metric of that epoch."""

    def __init__(self, tracker: RunTracker) -> None:
        self.tracker = tracker

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        self.tracker.log_metrics(state.epoch, metrics)

    def on_fit_end(self, state: EngineState) -> None:
        self.tracker.log_history(history_frame(state.history))
        self.tracker.set_tags(
            {"innerlens.stop_reason": state.stop_reason, "innerlens.best_epoch": str(state.best_epoch)}
        )


class Checkpointer:
    """``checkpoints/last.pt`` every epoch (for --resume) and ``best.pt`` when val/acc improves."""

    def __init__(self, tracker: RunTracker, experiment: Experiment, config: Config) -> None:
        self.tracker = tracker
        self.experiment = experiment
        self.config = config.to_dict()

    def _payload(self, state: EngineState) -> dict[str, Any]:
        return {**training_state(self.experiment, state), "config": self.config}

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        payload = self._payload(state)
        if improved:
            self.tracker.save_checkpoint("best", payload)
        self.tracker.save_checkpoint("last", payload)

    def on_fit_end(self, state: EngineState) -> None:
        pass
