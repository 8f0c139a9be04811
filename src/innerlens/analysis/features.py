"""Geometry of learned representations: PCA projections and effective dimensionality."""
from __future__ import annotations

import torch


def pca(points: torch.Tensor, components: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Projection of centred ``points`` (n x d) on their top principal axes, and every axis' variance share."""
    centred = points.to(torch.float64) - points.to(torch.float64).mean(0)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.pow(2)
    return centred @ right[:components].T, variance / variance.sum().clamp_min(1e-30)


def effective_dimension(points: torch.Tensor) -> float:
    """Participation ratio (Σλ)² / Σλ² of the covariance spectrum: 1 for a line, d for an isotropic cloud."""
    _, shares = pca(points, components=1)
    return float(1.0 / shares.pow(2).sum().clamp_min(1e-30))
