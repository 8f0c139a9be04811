"""What a family hands :func:`innerlens.session.run` (its built run, :class:`Plan`, and its report) and
what it is handed to record with (:class:`RunLog`): families never import the tracking layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from innerlens.engine import Callback, Experiment, FitResult, Selection


class RunLog(Protocol):
    """The one run a family records into: what it may write, and read back of its own run (a resume's
    snapshots). The session hands it to ``Plan.start`` and ``report``; MLflow stays behind it."""

    run_id: str

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_bytes(self, data: bytes, artifact_file: str) -> None: ...

    def log_figure(self, figure: Any, name: str) -> None: ...

    def log_history(self, history: pd.DataFrame) -> None: ...

    def log_directory(self, source: str | Path, artifact_path: str) -> None: ...

    def save_checkpoint(self, name: str, payload: dict[str, Any]) -> None: ...

    def list_checkpoints(self, folder: str = "") -> list[str]: ...

    def load_checkpoint(self, name: str) -> dict[str, Any]: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class ModelRelease:
    """A model the run publishes: once the fit has ended and before ``report``, the session has
    ``write`` put the fit's chosen model into a folder, logs that folder as ``artifact_path`` and,
    when ``register``, registers it as ``registered_name`` in the Model Registry."""

    artifact_path: str
    registered_name: str
    write: Callable[[FitResult, Path], None]
    register: bool = True


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
    release: ModelRelease | None = None  # a model to log (and register) before the report
    registered_version: str | None = None  # set by the session once ``release`` is registered

    def start(self, log: RunLog, resumed: bool) -> Sequence[Callback]:
        """Before training, in the open run (``resumed``: it continues an earlier attempt): log what
        the run needs and return extra engine callbacks."""
        return ()


class Family(Protocol):
    def build(self, config: Any, device: torch.device, **options: Any) -> Plan: ...

    def report(self, log: RunLog, plan: Any, fit: FitResult) -> None: ...
