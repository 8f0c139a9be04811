"""Probability calibration: Platt scaling and the expected calibration error."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def platt_fit(scores: torch.Tensor, labels: torch.Tensor, steps: int = 200) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a·score + b) on held-out scores."""
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([a, b], max_iter=steps, line_search_fn="strong_wolfe")
    x, y = scores.double(), labels.double()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * x + b, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(a.detach()), float(b.detach())


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Σ_bins (n_bin / n) · |accuracy − confidence| with equal-width bins of P(class 1)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - probabilities[inside].mean())
    return float(error)


def ece_interval(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10, resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap percentile interval of the ECE (examples resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = [expected_calibration_error(probabilities[rows], labels[rows], bins)
              for rows in (rng.integers(0, n, n) for _ in range(resamples))]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def ece_floor(probabilities: np.ndarray, bins: int = 10, draws: int = 1000, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model scores at these probabilities and this n: labels drawn
    as Bernoulli(p). Binning noise alone gives 0.04-0.08 at n ≈ 150 (it depends on the probabilities:
    bench/results/selector_seeds_runs.csv), so an ECE near it is not evidence
    of miscalibration, and one below it cannot be read as better calibration."""
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(probabilities, (rng.random(len(probabilities)) < probabilities).astype(float), bins)
                          for _ in range(draws)]))


def calibration_metrics(prefix: str, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{prefix}``, its bootstrap interval and the perfectly calibrated floor at the same n."""
    low, high = ece_interval(probabilities, labels)
    return {prefix: expected_calibration_error(probabilities, labels), f"{prefix}_ci_low": low, f"{prefix}_ci_high": high,
            f"{prefix}_floor": ece_floor(probabilities)}
