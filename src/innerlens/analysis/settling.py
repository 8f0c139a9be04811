"""Whether a run's weights had settled when it was measured.

Complexity (LLC, weight spread) means something only at a point training has stopped moving: an
LLC taken mid-collapse tracks the loss, not the network. A run is settled over a window of K
epochs when its training loss has held still there, either memorised (accuracy ≥ 0.999 and loss
≤ 0.005 throughout) or on a plateau (loss within ``plateau`` relative spread and accuracy within
half a point). It settled at the first epoch of the window that starts its final settled stretch.
"""
from __future__ import annotations

from dataclasses import dataclass

MEMORISED_ACC, MEMORISED_LOSS = 0.999, 0.005
PLATEAU_SPREAD, ACC_SPREAD = 0.05, 0.005


@dataclass(frozen=True)
class Settling:
    settled: bool
    epoch: int | None  # the epoch the final settled stretch began (None: not settled at the end)


def window_settled(losses: list[float], accuracies: list[float]) -> bool:
    """One window: memorised throughout, or a plateau."""
    if min(accuracies) >= MEMORISED_ACC and max(losses) <= MEMORISED_LOSS:
        return True
    low, high = min(losses), max(losses)
    return high - low <= PLATEAU_SPREAD * max(low, 1e-12) and max(accuracies) - min(accuracies) <= ACC_SPREAD


def settling(train_loss: list[float], train_acc: list[float], window: int) -> Settling:
    """Settledness at the last epoch of a history (epochs numbered from 1)."""
    n = len(train_loss)
    if n < window:
        return Settling(False, None)
    settled_at = [window_settled(train_loss[end - window:end], train_acc[end - window:end]) for end in range(window, n + 1)]
    if not settled_at[-1]:
        return Settling(False, None)
    first = len(settled_at) - 1
    while first > 0 and settled_at[first - 1]:
        first -= 1
    return Settling(True, first + 1)  # window ending at epoch first+window starts at epoch first+1
