"""A study's time-to-threshold: runs that never reach it are censored, not dropped (no store)."""
from __future__ import annotations

from innerlens.analysis.transitions import dynamics_summary


def test_runs_that_never_reach_the_threshold_are_censored_not_dropped() -> None:
    history = [{"step": float(e), "val/acc": 0.5, "train/acc": 1.0} for e in range(1, 6)]
    summary = dynamics_summary(history, max_epochs=5)
    assert summary["val/epoch_to_acc_0.95"] == 6 and summary["val/censored"] == 1.0
    history[2]["val/acc"] = 0.96
    assert dynamics_summary(history, max_epochs=5)["val/epoch_to_acc_0.95"] == 3
