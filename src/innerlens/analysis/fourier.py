"""Nanda et al. 2023's progress measures for modular addition, as pure tensor functions.

A network that groks ``(a + b) mod p`` represents tokens as waves ``cos(w_k a)``, ``sin(w_k a)``
with ``w_k = 2πk/p`` for a few key frequencies ``k`` and writes logits ``cos(w_k (a + b - c))``.
Restricted loss keeps only that part of the logits; excluded loss removes the key frequencies'
``cos/sin(w_k (a + b))`` dependence on the inputs and reads the training loss of the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def fourier_basis(p: int) -> torch.Tensor:
    """Orthonormal rows: constant, then ``cos(w_k x)``, ``sin(w_k x)`` for k = 1 .. p // 2 (shape p x p for odd p)."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        rows.append(torch.sin(2 * math.pi * k * x / p))
    basis = torch.stack(rows)[:p]
    return basis / basis.norm(dim=1, keepdim=True)


def frequency_norms(weights: torch.Tensor) -> torch.Tensor:
    """Norm of each frequency k = 1 .. p // 2 in the rows of ``weights`` (p x d, one row per residue).

    cos and sin of the same frequency are one 2-d subspace, so their norms are combined.
    """
    p = weights.shape[0]
    coefficients = fourier_basis(p).to(weights.device) @ weights.to(torch.float64)
    squared = coefficients[1:].pow(2).sum(1)
    if squared.numel() % 2:  # even p: the last (Nyquist) frequency has only a cosine
        squared = torch.cat([squared, squared.new_zeros(1)])
    return squared.view(-1, 2).sum(1).sqrt()


def key_frequencies(norms: torch.Tensor, count: int) -> list[int]:
    """The ``count`` strongest frequencies (1-based, as k in ``w_k = 2πk/p``), strongest first."""
    return [int(i) + 1 for i in torch.argsort(norms, descending=True)[:count]]


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, → 1 when one holds everything."""
    v = torch.sort(values.flatten().to(torch.float64)).values
    n = v.numel()
    if n == 0 or v.sum() <= 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    return float((2 * (ranks * v).sum() / (n * v.sum())) - (n + 1) / n)


def _waves(p: int, frequencies: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin(w_k (a + b)) over the p x p input grid, one unit-norm map per frequency (k, p, p)."""
    a = torch.arange(p, dtype=torch.float64, device=device)
    total = a[:, None] + a[None, :]
    w = 2 * math.pi * torch.tensor(frequencies, dtype=torch.float64, device=device)[:, None, None] / p
    cos, sin = torch.cos(w * total), torch.sin(w * total)
    return cos / cos.flatten(1).norm(dim=1)[:, None, None], sin / sin.flatten(1).norm(dim=1)[:, None, None]


def excluded_logits(logits: torch.Tensor, frequencies: list[int]) -> torch.Tensor:
    """``logits`` (p, p, classes) over the full input grid minus their key-frequency input dependence."""
    p = logits.shape[0]
    out = logits.to(torch.float64)
    for waves in _waves(p, frequencies, logits.device):
        for wave in waves:  # orthogonal maps, so projections can be removed one by one
            out = out - torch.einsum("ab,abc->c", wave, out)[None, None, :] * wave[:, :, None]
    return out


def restricted_logits(logits: torch.Tensor, frequencies: list[int]) -> torch.Tensor:
    """Only the ``cos(w_k (a + b - c))`` components of ``logits`` (p, p, p) for the key frequencies."""
    p = logits.shape[0]
    r = torch.arange(p, dtype=torch.float64, device=logits.device)
    total = r[:, None, None] + r[None, :, None] - r[None, None, :]
    out = torch.zeros_like(logits, dtype=torch.float64)
    for k in frequencies:
        direction = torch.cos(2 * math.pi * k * total / p)
        direction = direction / direction.norm()
        out = out + (direction * logits.to(torch.float64)).sum() * direction
    return out


@dataclass(frozen=True)
class ProgressMeasures:
    key_frequencies: list[int]
    frequency_norms: torch.Tensor
    gini: float
    restricted_loss: float
    excluded_loss: float


def progress_measures(
    embedding: torch.Tensor,
    grid_logits: torch.Tensor,
    train_pairs: torch.Tensor,
    *,
    key_count: int,
    frequencies: list[int] | None = None,
) -> ProgressMeasures:
    """Progress measures of a modular-addition model.

    ``embedding`` is the token embedding of the p residues (p x d), ``grid_logits`` the model's
    logits for every ``a b =`` (p, p, p), ``train_pairs`` the (a, b) rows of the training set, on
    which restricted and excluded loss are read (as in the paper). Key frequencies come from the
    embedding unless given (e.g. the final model's, when re-analysing checkpoints).
    """
    p = embedding.shape[0]
    norms = frequency_norms(embedding)
    keys = frequencies or key_frequencies(norms, key_count)
    a, b = train_pairs[:, 0], train_pairs[:, 1]
    labels = (a + b) % p

    def loss(logits: torch.Tensor) -> float:
        return float(F.cross_entropy(logits[a, b], labels))

    return ProgressMeasures(
        key_frequencies=keys,
        frequency_norms=norms,
        gini=gini(norms),
        restricted_loss=loss(restricted_logits(grid_logits, keys)),
        excluded_loss=loss(excluded_logits(grid_logits, keys)),
    )
