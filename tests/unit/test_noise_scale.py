"""The gradient noise scale: averaging the two moments over draws is unbiased, and the ratio of the
averages is far tighter than a single draw's ratio (simulated per-example gradients, known truth)."""
from __future__ import annotations

import numpy as np
import pytest

from innerlens.analysis.noise_scale import noise_scale

B_SMALL, B_BIG, DIM = 32, 128, 50
TRACE = 188.0  # tr(Σ) with |G|² = 1: B_simple = 188


def draw(rng: np.random.Generator, gradient: np.ndarray) -> tuple[float, float]:
    """Squared norms of a batch-32 mean gradient and of the batch-128 one that contains it."""
    examples = gradient + rng.normal(0, np.sqrt(TRACE / DIM), (B_BIG, DIM))
    return float((examples[:B_SMALL].mean(0) ** 2).sum()), float((examples.mean(0) ** 2).sum())


def test_averaged_moments_are_unbiased_and_the_ratio_of_averages_is_tight() -> None:
    rng = np.random.default_rng(0)
    gradient = np.zeros(DIM)
    gradient[0] = 1.0
    small, big = zip(*(draw(rng, gradient) for _ in range(4000)))
    pooled = noise_scale(list(small), list(big), B_SMALL, B_BIG)
    assert pooled["gns/grad_sq"] == pytest.approx(1.0, abs=3 * pooled["gns/grad_sq_se"])
    assert pooled["gns/trace"] == pytest.approx(TRACE, abs=3 * pooled["gns/trace_se"])
    assert pooled["gns/b_simple"] == pytest.approx(TRACE, rel=0.1)

    def spread(draws: int) -> float:
        ratios = [noise_scale(list(small[i:i + draws]), list(big[i:i + draws]), B_SMALL, B_BIG)["gns/b_simple"]
                  for i in range(0, 4000, draws)]
        low, high = np.nanpercentile(ratios, [10, 90])
        return high - low

    assert spread(16) < 0.5 * spread(1)
    single = noise_scale([small[0]], [big[0]], B_SMALL, B_BIG)
    assert np.isnan(single["gns/trace_se"])  # one draw has no spread to report
