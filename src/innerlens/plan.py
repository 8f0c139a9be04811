"""What a family hands :func:`innerlens.session.run`: its built run (:class:`Plan`) and its report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    import torch

    from innerlens.engine import Callback, Experiment, FitResult, Selection
    from innerlens.tracking import RunTracker


@dataclass
class Plan:
    """A built run, ready to train: what a family's ``build`` returns (a family that keeps more for
    its report, or logs before training, subclasses it)."""

    experiment: Experiment
    variant: str  # the run's group in compare and the UI
    run_name: str
    selection: Selection
    rounds: int  # evaluations: epochs, or rounds of ``steps_per_round`` steps
    steps_per_round: int = 1
    step_unit: str = "epoch"  # what the metrics' step counts ("step" for step-based families)
    tags: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # one line each for the person running it (a skipped measurement), once the run exists
    # Whether a checkpoint is due after this epoch, when something other than the run's own timer
    # decides (stacked seeds write at the same epoch); None: every checkpoint_interval seconds.
    checkpoint_due: Callable[[], bool] | None = None

    def start(self, tracker: RunTracker, resumed: bool) -> Sequence[Callback]:
        """Before training, in the open run (``resumed``: it continues an earlier attempt): log what
        the run needs and return extra engine callbacks."""
        return ()


class Family(Protocol):
    def build(self, config: Any, device: torch.device, **options: Any) -> Plan: ...

    def report(self, tracker: RunTracker, plan: Any, fit: FitResult) -> None: ...
