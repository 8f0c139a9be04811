"""The metric catalogue: every logged key's direction, declared once (no guessing from its name).

``kind`` is ``min`` or ``max`` (which way is better, so ``compare`` may show a run's best over
training), ``report`` (no best: test metrics, whose best over training would be selection on the
test set, and descriptive numbers), or ``censored_time`` (the step an event happened; a run where it
never happened is censored at its last step, never a sentinel in a statistic). Patterns are
``fnmatch``-style and the first match wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

Kind = str  # "min" | "max" | "report" | "censored_time"


@dataclass(frozen=True)
class Metric:
    pattern: str
    kind: Kind
    description: str
    headline: bool = False


CATALOGUE: tuple[Metric, ...] = (
    Metric("test/*", "report", "held-out numbers: reported at the validation-chosen point, never maximised"),
    Metric("*/epoch_to_acc_*", "censored_time", "first epoch at the accuracy bar (censored at the budget)"),
    Metric("*_step", "censored_time", "the step an event happened (censored at the run's last step)"),
    Metric("val/censored", "report", "1 when the accuracy bar was never reached"),
    Metric("train/settled*", "report", "settled at the end (1/0) and the epoch its settled stretch began"),
    Metric("train/collapses", "min", "times training accuracy fell back after memorising"),
    Metric("*loss*", "min", "a loss", headline=True),
    Metric("*/nll*", "min", "negative log-likelihood"),
    Metric("llc/*healthy*", "report", "1 when every chain stayed in the basin"),
    Metric("llc/*std*", "report", "spread of the chains' estimates"),
    Metric("llc/*", "min", "local learning coefficient (smaller: simpler)", headline=True),
    Metric("weights/std*", "min", "weight spread (smaller: narrower)", headline=True),
    Metric("weights/norm", "min", "weight norm"),
    Metric("*acc*", "max", "accuracy", headline=True),
    Metric("*auc*", "max", "area under the ROC curve", headline=True),
    Metric("*r2*", "max", "coefficient of determination"),
    Metric("*p_correct*", "max", "probability given to the correct answer"),
    Metric("*delta_vs_probe*", "max", "gain over the linear-probe control"),
    Metric("*ece*", "min", "expected calibration error"),
    Metric("*cka*", "max", "CKA similarity to the reference"),
)


def lookup(key: str) -> Metric | None:
    """The catalogue entry of ``key`` (None: unknown, so no direction and no best)."""
    return next((metric for metric in CATALOGUE if fnmatchcase(key, metric.pattern)), None)


def kind(key: str) -> Kind:
    metric = lookup(key)
    return metric.kind if metric is not None else "report"


def direction(key: str) -> str | None:
    """"min" or "max" where a best over training means something; None otherwise."""
    value = kind(key)
    return value if value in ("min", "max") else None
