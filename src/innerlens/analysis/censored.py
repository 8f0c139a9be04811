"""Times to an event that may never happen within the budget (generalisation, a transition).

A run that never reached the event is right-censored at its budget: it is not "fast" (a −1
sentinel) and not "at the budget" (an observation). Kaplan-Meier estimates the survival curve,
the restricted mean is the area under it up to a horizon (and is always labelled as restricted),
and a paired comparison counts only the pairs whose order is known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
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


def km_median(times: np.ndarray, observed: np.ndarray) -> float:
    """Kaplan-Meier median time to the event (NaN while survival has not fallen to one half)."""
    event_times, survival = kaplan_meier(times, observed)
    reached = np.flatnonzero(survival <= 0.5)
    return float(event_times[reached[0]]) if reached.size else float("nan")


def event_summary(times: np.ndarray, observed: np.ndarray, horizon: float, level: float = 0.95) -> dict[str, float | str]:
    """One row for a time to an event over runs, honest about censoring: with every event observed,
    the mean and its t-interval; with any censored, the restricted mean up to ``horizon`` (labelled so,
    no interval) and the Kaplan-Meier median. ``estimate`` says which the ``mean`` column holds."""
    from innerlens.analysis.stats import t_interval

    times, observed = np.asarray(times, float), np.asarray(observed, bool)
    row: dict[str, float | str] = {"n": float(len(times)), "events": float(observed.sum()),
                                   "km_median": km_median(times, observed) if len(times) else float("nan")}
    if len(times) and observed.all():
        low, high = t_interval(times, level) if len(times) > 1 else (float("nan"), float("nan"))
        return {**row, "estimate": "mean", "mean": float(times.mean()), "ci_low": low, "ci_high": high}
    return {**row, "estimate": f"restricted mean to {horizon:g}",
            "mean": restricted_mean(times, observed, horizon) if len(times) else float("nan"),
            "ci_low": float("nan"), "ci_high": float("nan")}


def event_table(frame: pd.DataFrame, group: str, column: str, horizon: float) -> pd.DataFrame:
    """:func:`event_summary` of ``column`` for each value of ``group``, where a negative time (the
    logged sentinel) means the event never came and is censored at ``horizon``."""
    rows = []
    for value, runs in frame.groupby(group, sort=True):
        steps = runs[column].to_numpy(float)
        observed = steps >= 0
        rows.append({group: value, **event_summary(np.where(observed, steps, horizon), observed, horizon)})
    return pd.DataFrame(rows, columns=[group, "n", "events", "km_median", "estimate", "mean", "ci_low", "ci_high"])
