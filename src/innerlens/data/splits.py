"""Deterministic, disjoint train/val/test splits."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SplitIndices:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> SplitIndices:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train/val/test by ``fractions``.

    Sizes are rounded down for val and test so every example lands in exactly one split;
    the same (n, fractions, seed) always gives the same split.
    """
    assert abs(sum(fractions) - 1.0) < 1e-6, fractions
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = int(n * fractions[1])
    n_test = int(n * fractions[2])
    n_train = n - n_val - n_test
    return SplitIndices(
        train=order[:n_train],
        val=order[n_train : n_train + n_val],
        test=order[n_train + n_val :],
    )
