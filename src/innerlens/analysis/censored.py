"""Times to an event that may never happen within the budget (generalisation, a transition).

A run that never reached the event is right-censored at its budget: it is not "fast" (a −1
sentinel) and not "at the budget" (an observation). Kaplan-Meier estimates the survival curve,
the restricted mean is the area under it up to a horizon (and is always labelled as restricted),
and a paired comparison counts only the pairs whose order is known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def kaplan_meier(times: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(event times, survival just after each): the product-limit estimate of P(T > t)."""
    times, observed = np.asarray(times, float), np.asarray(observed, bool)
    event_times = np.unique(times[observed])
    survival, current = [], 1.0
    for t in event_times:
        at_risk = np.sum(times >= t)
        events = np.sum((times == t) & observed)
        current *= 1 - events / at_risk
        survival.append(current)
    return event_times, np.array(survival)


def restricted_mean(times: np.ndarray, observed: np.ndarray, horizon: float) -> float:
    """Restricted mean time to the event up to ``horizon``: ∫₀^horizon S(t) dt under Kaplan-Meier.
    Without censoring it is the mean of min(time, horizon)."""
    event_times, survival = kaplan_meier(times, observed)
    area, last_time, last_survival = 0.0, 0.0, 1.0
    for t, s in zip(event_times, survival):
        if t > horizon:
            break
        area += last_survival * (t - last_time)
        last_time, last_survival = t, s
    return float(area + last_survival * (horizon - last_time))


@dataclass(frozen=True)
class PairedOrder:
    """How the pairs' orders came out: earlier in the first arm, later, tied, or unknown (censoring)."""

    earlier: int
    later: int
    tied: int
    unknown: int

    @property
    def p_value(self) -> float:
        """Two-sided exact sign test over the pairs whose order is known (ties left out)."""
        n = self.earlier + self.later
        return float(stats.binomtest(self.earlier, n).pvalue) if n else float("nan")


def paired_order(times_a: np.ndarray, observed_a: np.ndarray, times_b: np.ndarray, observed_b: np.ndarray) -> PairedOrder:
    """Whether the event came earlier in arm a than in arm b, pair by pair, where censoring allows
    saying: both observed, or one observed before the other's censoring time."""
    counts = {"earlier": 0, "later": 0, "tied": 0, "unknown": 0}
    for ta, ea, tb, eb in zip(times_a, observed_a, times_b, observed_b):
        if ea and eb:
            counts["earlier" if ta < tb else "later" if ta > tb else "tied"] += 1
        elif ea and ta < tb:  # b had not happened by its censoring time tb, after a's event
            counts["earlier"] += 1
        elif eb and tb < ta:
            counts["later"] += 1
        else:
            counts["unknown"] += 1
    return PairedOrder(**counts)


def gehan_test(times_a: np.ndarray, observed_a: np.ndarray, times_b: np.ndarray, observed_b: np.ndarray) -> float:
    """Two-sided p of Gehan's generalised Wilcoxon test for two independent censored samples, with
    Mantel's permutation variance: each run scores +1 for every run it surely outlasted and -1 for
    every run surely outlasting it (order known despite censoring)."""
    times = np.concatenate([np.asarray(times_a, float), np.asarray(times_b, float)])
    observed = np.concatenate([np.asarray(observed_a, bool), np.asarray(observed_b, bool)])
    n, n_a = len(times), len(times_a)
    later = (times[:, None] > times[None, :]) & observed[None, :]  # i surely after j: j's event came first
    scores = later.sum(1) - later.sum(0)
    statistic = scores[:n_a].sum()
    variance = n_a * (n - n_a) * np.sum(scores**2) / (n * (n - 1))
    if variance == 0:
        return 1.0
    return float(2 * stats.norm.sf(abs(statistic) / np.sqrt(variance)))
