"""What a family's run returns (see :func:`innerlens.session.run`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, the evaluation at the validation-chosen step, the weights there when
    the family kept them in memory, and the tidy (step, key, value) history."""

    run_id: str
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    history: pd.DataFrame | None = None
