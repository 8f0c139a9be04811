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


def change_points(steps: np.ndarray, values: np.ndarray, *, penalty: float | None = None, min_size: int = 3) -> list[float]:
    """Steps where the mean level of ``values`` changes (ruptures' PELT, L2 cost).

    Without ``penalty``, it is BIC-like: ``3 · σ² · log n`` with σ estimated robustly from the
    first differences, so a flat noisy curve yields no change point.
    """
    import ruptures

    values = np.asarray(values, float)
    finite = np.isfinite(values)
    steps, values = np.asarray(steps)[finite], values[finite]
    n = len(values)
    if n < 2 * min_size:
        return []
    if penalty is None:
        sigma = np.median(np.abs(np.diff(values))) / (0.6745 * math.sqrt(2)) + 1e-12
        penalty = 3.0 * sigma**2 * math.log(n)
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(values.reshape(-1, 1)).predict(pen=penalty)
    return [float(steps[i]) for i in ends[:-1]]  # the last "end" is the series' end, not a change


@dataclass(frozen=True)
class Transitions:
    """What a grokking run did and when (NaN for what did not happen)."""

    memorization_step: float
    generalization_step: float
    jump: Jump
    change_points: list[float]

    @property
    def grokking_gap(self) -> float:
        return self.generalization_step - self.memorization_step

    @property
    def phases(self) -> list[tuple[str, float, float]]:
        """(name, start, end) spans: memorization, circuit formation, cleanup (Nanda et al.'s names)."""
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
    """Memorization (train acc), generalization (held-out acc), the held-out jump and change points of log loss."""
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
