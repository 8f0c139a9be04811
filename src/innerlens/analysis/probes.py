"""Introspection's measures: its scale-free loss, regression metrics, the frozen ridge probe, the
entropy of a histogram and per-component gradient norms."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalized_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE divided by the target's variance in the batch: unchanged when target and prediction are
    rescaled together, so a model cannot lower it by shrinking the neuron it reports (plain MSE on
    fixed-standardised targets rewards exactly that)."""
    return F.mse_loss(prediction, target) / target.var().clamp_min(1e-8)


def regression_metrics(prediction: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """R², Pearson r and MSE in activation units."""
    prediction, truth = prediction.double().cpu(), truth.double().cpu()
    residual = ((truth - prediction) ** 2).sum()
    total = ((truth - truth.mean()) ** 2).sum().clamp_min(1e-30)
    pearson = float(np.corrcoef(prediction.numpy(), truth.numpy())[0, 1]) if prediction.std() > 0 else 0.0
    return {"r2": float(1 - residual / total), "pearson": pearson, "mse": float(residual / len(truth))}


def ridge_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Closed-form ridge regression (standardised features), the frozen linear-probe baseline."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a = (train_x - mean) / std
    weights = torch.linalg.solve(a.T @ a + alpha * torch.eye(a.shape[1], dtype=a.dtype), a.T @ (train_y - train_y.mean()))
    return ((test_x - mean) / std) @ weights + train_y.mean()


def histogram_entropy(shares: np.ndarray) -> float:
    """Entropy (nats) of a histogram given as shares; values outside the original range are clipped
    into its end bins, so the original distribution and a drifted one are measured on one grid."""
    positive = shares[shares > 0]
    return float(-(positive * np.log(positive)).sum())


def gradient_norms(bridge: torch.nn.Module) -> dict[str, float]:
    """Gradient norm per (layer, component): embeddings, then attention and MLP of every block."""
    def norm(module: torch.nn.Module) -> float:
        grads = [p.grad.detach().pow(2).sum() for p in module.parameters() if p.grad is not None]
        return float(torch.sqrt(torch.stack(grads).sum())) if grads else 0.0

    norms = {"embeddings": norm(bridge.embed) + norm(bridge.pos_embed)}
    for i, block in enumerate(bridge.blocks):
        norms[f"blocks.{i}.attn"] = norm(block.attn)
        norms[f"blocks.{i}.mlp"] = norm(block.mlp)
    return norms
