"""Fourier progress measures recover planted structure."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from innerlens.analysis.features import effective_dimension, pca
from innerlens.analysis.fourier import (
    excluded_logits,
    fourier_basis,
    frequency_norms,
    gini,
    key_frequencies,
    progress_measures,
    restricted_logits,
)

P = 31


def planted_embedding(frequencies: list[int], d: int = 24, noise: float = 0.01) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(P, dtype=torch.float64)[:, None]
    embedding = noise * torch.randn(P, d, generator=generator, dtype=torch.float64)
    for k in frequencies:
        w = 2 * math.pi * k / P
        embedding += torch.cos(w * x) * torch.randn(1, d, generator=generator, dtype=torch.float64)
        embedding += torch.sin(w * x) * torch.randn(1, d, generator=generator, dtype=torch.float64)
    return embedding


def ideal_logits(frequencies: list[int], scale: float = 5.0) -> torch.Tensor:
    r = torch.arange(P, dtype=torch.float64)
    total = r[:, None, None] + r[None, :, None] - r[None, None, :]
    return scale * sum(torch.cos(2 * math.pi * k * total / P) for k in frequencies)


def test_basis_is_orthonormal() -> None:
    basis = fourier_basis(P)
    assert torch.allclose(basis @ basis.T, torch.eye(P, dtype=torch.float64), atol=1e-10)


def test_planted_frequencies_are_recovered() -> None:
    norms = frequency_norms(planted_embedding([4, 11, 14]))
    assert sorted(key_frequencies(norms, 3)) == [4, 11, 14]
    assert gini(norms) > 0.7 > gini(frequency_norms(planted_embedding([], noise=1.0)))


def test_gini_limits() -> None:
    assert gini(torch.ones(10)) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0] * 9 + [1.0])) == pytest.approx(0.9)


def test_restricted_keeps_and_excluded_removes_the_algorithm() -> None:
    logits = ideal_logits([3, 9])
    assert torch.allclose(restricted_logits(logits, [3, 9]), logits, atol=1e-9)
    assert excluded_logits(logits, [3, 9]).abs().max() < 1e-9
    # only the keys matter: restricting to other frequencies leaves nothing
    assert restricted_logits(logits, [5]).abs().max() < 1e-9


def test_progress_measures_on_an_ideal_model() -> None:
    pairs = torch.cartesian_prod(torch.arange(P), torch.arange(P))[::3]
    measures = progress_measures(planted_embedding([3, 9]), ideal_logits([3, 9]), pairs, key_count=2)
    full = F.cross_entropy(ideal_logits([3, 9])[pairs[:, 0], pairs[:, 1]], (pairs[:, 0] + pairs[:, 1]) % P)
    assert sorted(measures.key_frequencies) == [3, 9]
    assert measures.restricted_loss == pytest.approx(float(full), rel=1e-6)
    assert measures.excluded_loss == pytest.approx(math.log(P), rel=1e-6)  # uniform logits left


def test_circle_embedding_has_two_effective_dimensions() -> None:
    embedding = planted_embedding([5], noise=0.0)
    points, shares = pca(embedding, 2)
    assert shares[:2].sum() == pytest.approx(1.0, abs=1e-9)
    radii = points.norm(dim=1)
    assert effective_dimension(embedding) == pytest.approx(2.0, rel=0.2)
    assert radii.std() / radii.mean() < 0.5  # points lie near a (possibly squashed) ellipse
