"""Engine callbacks that record a fit in its MLflow run."""
from __future__ import annotations

import time
from typing import Any, Callable

from innerlens.config import Config
from innerlens.engine import (
    EngineState,
    Experiment,
    history_frame,
    snapshot,
    training_state,
)
from innerlens.tracking import RunTracker


class MetricsLogger:
    """One ``log_batch`` per evaluation (epoch, or round of steps) with all of its metrics.

    After a resume, epochs the run already logged before it stopped are recomputed (from the
    last checkpoint, deterministically) but not logged twice.
    """

    def __init__(self, tracker: RunTracker, logged_through: int = 0) -> None:
        self.tracker = tracker
        self.logged_through = logged_through

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        if state.step > self.logged_through:
            self.tracker.log_metrics(state.step, metrics)

    def on_fit_end(self, state: EngineState) -> None:
        self.tracker.log_history(history_frame(state.history))
        self.tracker.set_tags(
            {"innerlens.stop_reason": state.stop_reason, "innerlens.best_step": str(state.best_step)}
        )


class Checkpointer:
    """``checkpoints/last.pt`` and ``best.pt`` (best val/acc so far), written together.

    Writing every epoch costs more than a small model's epoch is worth, so they are written
    when ``interval_s`` seconds have passed since the last write and always on the final epoch;
    the best state is snapshotted in memory when it improves. A crash loses at most
    ``interval_s`` of training, which ``--resume`` recomputes. With ``due``, it decides instead of the timer.
    """

    def __init__(self, tracker: RunTracker, experiment: Experiment, config: Config, interval_s: float = 0.0,
                 due: Callable[[], bool] | None = None) -> None:
        self.due = due
        self.tracker = tracker
        self.experiment = experiment
        self.config = config.to_dict()
        self.interval_s = interval_s
        self.last_write = time.monotonic()
        self.pending_best: dict[str, Any] | None = None
        self.written_epoch = -1

    def _payload(self, state: EngineState) -> dict[str, Any]:
        return snapshot({**training_state(self.experiment, state), "config": self.config})

    def on_epoch_end(self, state: EngineState, metrics: dict[str, float], improved: bool) -> None:
        payload = self._payload(state) if improved else None
        if improved:
            self.pending_best = payload
        due = self.due() if self.due is not None else time.monotonic() - self.last_write >= self.interval_s
        if not (due or state.stop_reason):
            return
        if self.pending_best is not None:
            self.tracker.save_checkpoint("best", self.pending_best)
            self.pending_best = None
        self.tracker.save_checkpoint("last", payload or self._payload(state))
        self.last_write, self.written_epoch = time.monotonic(), state.epoch

    def on_fit_end(self, state: EngineState) -> None:
        """A stop decided by a later callback (a family's own end) still leaves its final checkpoint."""
        if state.stop_reason and self.written_epoch != state.epoch:
            self.on_epoch_end(state, {}, improved=False)
