"""The self-modeling plots, for one run or many (a tidy frame with a group column)."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from innerlens.viz.curves import learning_dynamics, metric_curves

SINGLE_RUN_GROUP = "variant"


def figures(history: pd.DataFrame, group: str = SINGLE_RUN_GROUP) -> dict[str, Figure]:
    """The six self-modeling plots from a tidy frame with a ``group`` column (one or many runs)."""
    selfmodel_keys = sorted(k for k in history["key"].unique() if k.startswith("selfmodel/"))
    return {
        "accuracy": metric_curves(history, ["train/acc", "val/acc", "test/acc"], group=group, title="Accuracy"),
        "loss": metric_curves(history, ["train/loss", "val/loss", "test/loss"], group=group, title="Task loss", log_y=True),
        "weight_std": metric_curves(history, ["weights/std"], group=group, title="Weight std"),
        "rlct": metric_curves(history, ["llc/mean"], group=group, title="RLCT (local learning coefficient)"),
        "self_model_loss": metric_curves(
            history, selfmodel_keys or ["selfmodel/loss"], group=group, title="Self-model loss (MSE)", log_y=bool(selfmodel_keys)
        ),
        "learning_dynamics": learning_dynamics(history, ["val", "test"], group=group, title="Learning dynamics"),
    }
