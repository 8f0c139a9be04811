"""What a family's run returns (see :func:`innerlens.session.run`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, the evaluation at the validation-chosen step, the weights there when
    the family kept them in memory, and every metric it logged as tidy (step, key, value) rows (None
    when an earlier attempt logged part of them: a resumed run, or one that had finished before)."""

    run_id: str
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    history: pd.DataFrame | None = None

    def portable(self) -> RunResult:
        """Without the weights: what a worker hands back to its study."""
        return replace(self, best_state=None)
