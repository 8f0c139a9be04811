"""Phase transitions in training curves: memorization, generalization, sharpness, change points.

Pure functions of (steps, values) arrays so they can be tested on synthetic curves and rerun
on any logged history.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def first_step_at_or_above(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """The first step whose value reaches ``threshold`` (NaN when it never does)."""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return float(steps[hits[0]]) if hits.size else math.nan


@dataclass(frozen=True)
class Jump:
    """How a curve rises from its baseline to its final level."""

    start: float  # first step at 10 % of the rise
    end: float  # first step at 90 % of the rise
    max_slope: float  # largest rise per step between two evaluations

    @property
    def width(self) -> float:
        return self.end - self.start


def jump(steps: np.ndarray, values: np.ndarray, low: float = 0.1, high: float = 0.9) -> Jump:
    """10 %–90 % rise of ``values`` from its minimum before the peak to its final level."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if len(values) < 2:
        return Jump(math.nan, math.nan, math.nan)
    peak = int(np.argmax(values))
    base = float(values[: peak + 1].min())
    top = float(values[peak:].mean()) if peak < len(values) - 1 else float(values[peak])
    rise = top - base
    slopes = np.diff(values) / np.maximum(np.diff(steps), 1e-12)
    if rise <= 0:
        return Jump(math.nan, math.nan, float(slopes.max()))
    return Jump(
        first_step_at_or_above(steps, values, base + low * rise),
        first_step_at_or_above(steps, values, base + high * rise),
        float(slopes.max()),
    )


def change_points(steps: np.ndarray, values: np.ndarray, *, penalty: float | None = None, min_fraction: float = 0.05) -> list[float]:
    """Steps where the *slope* of ``values`` changes: PELT with a piecewise-linear cost (ruptures' CostLinear).

    A mean-shift cost splits any sloped or curved series into many flat pieces (it found 42 change
    points on a straight noisy line); a linear cost finds none on a line and the kinks of a planted
    two-phase curve. Without ``penalty`` it is BIC-like, ``4 · σ² · log n``, with σ estimated
    robustly from second differences (which a straight line does not move). A smooth curve yields
    as many pieces as its curvature needs at that noise: read the count as "linear pieces", not phases.
    Segments are at least ``min_fraction`` of the series long.
    """
    import ruptures
    from ruptures.costs import CostLinear

    values = np.asarray(values, float)
    finite = np.isfinite(values)
    steps, values = np.asarray(steps, float)[finite], values[finite]
    n = len(values)
    min_size = max(3, int(n * min_fraction))
    if n < 2 * min_size:
        return []
    if penalty is None:
        second = np.diff(values, 2)
        sigma = np.median(np.abs(second - np.median(second))) / (0.6745 * math.sqrt(6)) + 1e-12
        penalty = 4.0 * sigma**2 * math.log(n)
    scaled = (steps - steps.mean()) / (steps.std() or 1.0)
    signal = np.column_stack([values, scaled, np.ones(n)])  # CostLinear: y, then its regressors
    ends = ruptures.Pelt(custom_cost=CostLinear(), min_size=min_size, jump=1).fit(signal).predict(pen=penalty)
    return [float(steps[i]) for i in ends[:-1]]  # the last "end" is the series' end, not a change


@dataclass(frozen=True)
class ProgressPhases:
    """Nanda et al.'s phase boundaries read from the progress measures (NaN where a measure is absent).

    - circuit formation starts when the excluded loss (train loss without the key frequencies)
      stops falling with memorisation and turns up: its minimum, if it later rises 1.5-fold;
    - cleanup is the restricted loss's (loss with only the key frequencies) fall to its final level:
      it starts at 10 % and ends at 90 % of that fall, on a log scale.
    """

    circuit_formation_start: float
    cleanup_start: float
    cleanup_end: float


def progress_phases(steps: np.ndarray, excluded_loss: np.ndarray, restricted_loss: np.ndarray) -> ProgressPhases:
    steps = np.asarray(steps, float)
    excluded = np.log(np.maximum(np.asarray(excluded_loss, float), 1e-12))
    restricted = np.log(np.maximum(np.asarray(restricted_loss, float), 1e-12))
    if len(steps) < 3:
        return ProgressPhases(math.nan, math.nan, math.nan)
    lowest = int(np.argmin(excluded))
    turns_up = excluded[lowest:].max() - excluded[lowest] > math.log(1.5)  # not noise: at least 1.5x
    circuit = float(steps[lowest]) if turns_up else math.nan
    top = int(np.argmax(restricted))
    fall = restricted[top] - float(np.median(restricted[-max(1, len(steps) // 20):]))  # to the final level
    if fall <= 0:
        return ProgressPhases(circuit, math.nan, math.nan)

    def fallen(share: float) -> float:
        """The first step after the peak at which ``share`` of the fall is done."""
        hits = np.flatnonzero(restricted[top:] <= restricted[top] - share * fall)
        return float(steps[top + hits[0]]) if hits.size else math.nan

    return ProgressPhases(circuit, fallen(0.1), fallen(0.9))


@dataclass(frozen=True)
class Transitions:
    """What a grokking run did and when (NaN for what did not happen)."""

    memorization_step: float
    generalization_step: float
    jump: Jump
    change_points: list[float]
    progress: ProgressPhases = ProgressPhases(math.nan, math.nan, math.nan)

    @property
    def grokking_gap(self) -> float:
        return self.generalization_step - self.memorization_step

    @property
    def phases(self) -> list[tuple[str, float, float]]:
        """(name, start, end) spans: memorization, circuit formation, cleanup (Nanda et al.'s names).

        From the progress measures when the run logged them; otherwise from accuracy proxies
        (memorization -> 10 % of the held-out rise -> 90 % of it).
        """
        progress = self.progress
        if not math.isnan(progress.circuit_formation_start) and not math.isnan(progress.cleanup_start):
            spans = [("memorization", 0.0, progress.circuit_formation_start)]
            if progress.cleanup_start > progress.circuit_formation_start:
                spans.append(("circuit formation", progress.circuit_formation_start, progress.cleanup_start))
            if not math.isnan(progress.cleanup_end):
                spans.append(("cleanup", progress.cleanup_start, progress.cleanup_end))
            return spans
        spans = []
        if not math.isnan(self.memorization_step):
            spans.append(("memorization", 0.0, self.memorization_step))
            if not math.isnan(self.jump.start) and self.jump.start > self.memorization_step:
                spans.append(("circuit formation", self.memorization_step, self.jump.start))
        if not math.isnan(self.jump.start) and not math.isnan(self.jump.end):
            spans.append(("cleanup", self.jump.start, self.jump.end))
        return spans

    def metrics(self) -> dict[str, float]:
        """``grok/...`` metrics (NaN-free: MLflow cannot chart NaN, so what did not happen is -1)."""
        values = {
            "grok/memorization_step": self.memorization_step,
            "grok/generalization_step": self.generalization_step,
            "grok/gap_steps": self.grokking_gap,
            "grok/jump_start_step": self.jump.start,
            "grok/jump_end_step": self.jump.end,
            "grok/sharpness_steps": self.jump.width,
            "grok/max_slope": self.jump.max_slope,
            "grok/change_points": float(len(self.change_points)),
            "grok/circuit_formation_start_step": self.progress.circuit_formation_start,
            "grok/cleanup_start_step": self.progress.cleanup_start,
            "grok/cleanup_end_step": self.progress.cleanup_end,
        }
        return {key: (-1.0 if math.isnan(value) else value) for key, value in values.items()}


def detect_transitions(
    steps: np.ndarray,
    train_acc: np.ndarray,
    heldout_acc: np.ndarray,
    heldout_loss: np.ndarray,
    *,
    memorization_threshold: float = 0.99,
    generalization_threshold: float = 0.99,
) -> Transitions:
    """Memorization (train acc), generalization (held-out acc), the held-out jump and the slope changes of log loss."""
    steps = np.asarray(steps, float)
    return Transitions(
        memorization_step=first_step_at_or_above(steps, np.asarray(train_acc), memorization_threshold),
        generalization_step=first_step_at_or_above(steps, np.asarray(heldout_acc), generalization_threshold),
        jump=jump(steps, np.asarray(heldout_acc)),
        change_points=change_points(steps, np.log(np.maximum(np.asarray(heldout_loss, float), 1e-12))),
    )


def collapses(train_acc: list[float], reached: float = 0.99, floor: float = 0.9) -> int:
    """How many times training accuracy, having been at ``reached``, fell below ``floor`` (loss
    spikes that undo memorisation, as the old self-modeling regime did three times)."""
    count, memorised = 0, False
    for value in train_acc:
        if value >= reached:
            memorised = True
        elif memorised and value < floor:
            count, memorised = count + 1, False
    return count


def collapsed(train_acc: list[float], reached: float = 0.99, floor: float = 0.9) -> bool:
    """True when training accuracy, once at ``reached``, later falls below ``floor``."""
    return collapses(train_acc, reached, floor) > 0


GENERALISED = 0.95  # validation accuracy that counts as generalised (val/epoch_to_acc_0.95)


def first_generalised(history: list[dict[str, float]], threshold: float = GENERALISED) -> int | None:
    """The first evaluation step whose validation accuracy reached ``threshold`` (None: never)."""
    return next((int(entry["step"]) for entry in history if entry["val/acc"] >= threshold), None)


def dynamics_summary(history: list[dict[str, float]], max_epochs: int, threshold: float = GENERALISED) -> dict[str, float]:
    """When validation accuracy first reached ``threshold`` (``max_epochs + 1``: censored, it never
    did within the budget) and how many times training collapsed after memorising."""
    val_acc = [entry["val/acc"] for entry in history]
    reached = first_generalised(history, threshold)
    return {
        "val/epoch_to_acc_0.95": float(reached if reached is not None else max_epochs + 1),
        "val/censored": float(reached is None),
        "train/collapses": float(collapses([entry["train/acc"] for entry in history])),
        "val/acc_final": val_acc[-1],
    }
