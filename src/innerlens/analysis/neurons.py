"""Neuron scanning: activations of every unit at one token position, scored by variance and range.

Lean by construction: only the hooks asked for are cached (``names_filter``), the forward pass
stops after the deepest needed layer, texts go through in padded batches, and statistics are
accumulated batch by batch (Chan et al.'s parallel update) instead of holding every activation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

# (activations [batch, seq, units], last real token per row, position or None for the last) -> [batch, units]
Select = Callable[[torch.Tensor, torch.Tensor, "int | None"], torch.Tensor]


@dataclass
class RunningStats:
    """Mean, population variance, min and max per unit, updated one batch at a time."""

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    minimum: torch.Tensor | None = None
    maximum: torch.Tensor | None = None

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().to(torch.float64).cpu()
        n, batch_mean = values.shape[0], values.mean(0)
        batch_m2 = ((values - batch_mean) ** 2).sum(0)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, batch_mean, batch_m2
            self.minimum, self.maximum = values.min(0).values, values.max(0).values
            return
        assert self.mean is not None and self.m2 is not None and self.minimum is not None and self.maximum is not None
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.minimum = torch.minimum(self.minimum, values.min(0).values)
        self.maximum = torch.maximum(self.maximum, values.max(0).values)
        self.count = total

    @property
    def variance(self) -> torch.Tensor:
        assert self.m2 is not None
        return self.m2 / self.count

    @property
    def range(self) -> torch.Tensor:
        assert self.maximum is not None and self.minimum is not None
        return self.maximum - self.minimum


@dataclass
class ScanResult:
    """Scores per (layer, unit) for the scanned layers."""

    layer_type: str
    layers: list[int]
    variance: torch.Tensor  # layers x units
    range: torch.Tensor
    combined: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.combined = combined_score(self.variance, self.range)

    def best(self, layer: int | None = None) -> tuple[int, int]:
        """(layer, unit) with the highest combined score, within ``layer`` when given."""
        if layer is not None:
            row = self.layers.index(layer)
            return layer, int(self.combined[row].argmax())
        flat = int(self.combined.argmax())
        return self.layers[flat // self.combined.shape[1]], flat % self.combined.shape[1]


def combined_score(variance: torch.Tensor, value_range: torch.Tensor) -> torch.Tensor:
    """Geometric mean of variance and range, each divided by its maximum over all scanned units:
    a unit scores high only when it both varies a lot and spans a wide range (1 = best on both)."""
    return torch.sqrt(variance / variance.max().clamp_min(1e-30) * value_range / value_range.max().clamp_min(1e-30))


@torch.no_grad()
def unit_activations(
    bridge: torch.nn.Module, ids: torch.Tensor, last: torch.Tensor, names: list[str], position: int | None, stop_at_layer: int,
    select: Select,
) -> dict[str, torch.Tensor]:
    """Activations of the hooks ``names`` at the position ``select`` picks, for one batch (only those hooks cached)."""
    wanted = set(names)
    _, cache = bridge.run_with_cache(ids, names_filter=lambda name: name in wanted, stop_at_layer=stop_at_layer)
    return {name: select(cache[name], last, position) for name in names}


def scan(
    bridge: torch.nn.Module,
    ids: torch.Tensor,
    last: torch.Tensor,
    *,
    layer_type: str,
    layers: list[int],
    names: list[str],
    position: int | None,
    select: Select,
    batch_size: int = 32,
) -> ScanResult:
    """Score every unit of ``layers`` (their hooks ``names``) over all texts (``ids`` right-padded,
    ``last`` = last real token)."""
    stats = {name: RunningStats() for name in names}
    for start in range(0, len(ids), batch_size):
        batch = slice(start, start + batch_size)
        for name, values in unit_activations(bridge, ids[batch], last[batch], names, position, max(layers) + 1, select).items():
            stats[name].update(values)
    return ScanResult(
        layer_type=layer_type,
        layers=list(layers),
        variance=torch.stack([stats[n].variance for n in names]),
        range=torch.stack([stats[n].range for n in names]),
    )
