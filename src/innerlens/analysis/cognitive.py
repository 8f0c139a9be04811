"""Standard learners for the same episodes: online L2-regularised logistic regression, and a
prototype learner (the synthetic participants: a learner *different* from both models compared).

Before each trial the learner predicts from the weights fitted to the trials seen so far (all
zeros, i.e. p = 0.5, before any); after it, it refits on every trial so far. Fitting is exact
(Newton steps, warm-started from the previous trial), batched over episodes. The Hessian
``λI + AᵀA`` (A: square-root-weighted inputs) is inverted with the Woodbury identity in the
n × n space of the trials seen, so wide backbones (DINOv2: 768) cost O(n²·d), not O(d³).

Choices are ``sigmoid(logit / temperature)``; the temperature is fitted to human choices by
maximum likelihood. Human files record whether each trial was correct, not which object was
shown, so likelihoods are taken on p(correct) per (dimension, trial), averaged over the
learner's episodes of that dimension.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar


@torch.no_grad()
def online_logistic_logits(
    features: torch.Tensor, labels: torch.Tensor, l2: float = 1.0, newton_steps: int = 4
) -> torch.Tensor:
    """(episodes, trials) logits of label 1 predicted before each trial's label is seen."""
    episodes, trials, width = features.shape
    x = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1).double()  # with intercept
    y = labels.double()
    w = torch.zeros(episodes, width + 1, dtype=torch.float64, device=features.device)
    logits = torch.empty(episodes, trials, dtype=torch.float64, device=features.device)
    for t in range(trials):
        logits[:, t] = (x[:, t] * w).sum(-1)
        seen_x, seen_y = x[:, : t + 1], y[:, : t + 1]
        identity = torch.eye(t + 1, dtype=torch.float64, device=features.device)
        for _ in range(newton_steps):
            p = torch.sigmoid(torch.einsum("enf,ef->en", seen_x, w))
            gradient = torch.einsum("enf,en->ef", seen_x, p - seen_y) + l2 * w
            a = (p * (1 - p)).sqrt()[..., None] * seen_x
            inner = torch.linalg.solve(l2 * identity + a @ a.transpose(1, 2), torch.einsum("enf,ef->en", a, gradient))
            w = w - (gradient - torch.einsum("enf,en->ef", a, inner)) / l2
    return logits.float()


@torch.no_grad()
def prototype_logits(features: torch.Tensor, labels: torch.Tensor, sharpness: float = 1.0) -> torch.Tensor:
    """(episodes, trials) logits of label 1 from a prototype learner: before each trial, the
    difference of squared distances to the mean of the label-0 and the label-1 examples seen so far
    (per feature, times ``sharpness``); 0 while either class is unseen."""
    x, y = features.double(), labels.double()[..., None]
    ones = torch.cumsum(y, 1) - y  # examples of each class seen before this trial
    zeros = torch.cumsum(1 - y, 1) - (1 - y)
    mean_one = (torch.cumsum(x * y, 1) - x * y) / ones.clamp_min(1)
    mean_zero = (torch.cumsum(x * (1 - y), 1) - x * (1 - y)) / zeros.clamp_min(1)
    distance = ((x - mean_zero) ** 2).mean(-1) - ((x - mean_one) ** 2).mean(-1)
    seen_both = (ones[..., 0] > 0) & (zeros[..., 0] > 0)
    return torch.where(seen_both, sharpness * distance, torch.zeros_like(distance)).float()


def correct_probability(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """p(choosing the right label) per trial under ``sigmoid(logit / temperature)`` choices."""
    p_one = torch.sigmoid(logits / temperature)
    return torch.where(labels > 0.5, p_one, 1.0 - p_one)


def curve_by_dimension(p_correct: torch.Tensor, dimensions: torch.Tensor) -> pd.DataFrame:
    """Mean p(correct) per (dimension, trial) over episodes; trials numbered from 1."""
    frame = pd.DataFrame(p_correct.cpu().numpy())
    frame["dimension"] = dimensions.cpu().numpy()
    long = frame.melt(id_vars="dimension", var_name="trial", value_name="p_correct")
    long["trial"] = long["trial"].astype(int) + 1
    return long.groupby(["dimension", "trial"], as_index=False)["p_correct"].mean()


def human_nll(curve: pd.DataFrame, human: pd.DataFrame) -> float:
    """Mean per-trial negative log-likelihood of the humans' correct/incorrect under a p(correct) curve."""
    merged = human.merge(curve, on=["dimension", "trial"], how="inner")
    assert len(merged), "human trials were clipped to the model's dimensions and trials"
    p = merged["p_correct"].clip(1e-6, 1 - 1e-6).to_numpy()
    correct = merged["correct"].to_numpy()
    return float(-np.mean(correct * np.log(p) + (1 - correct) * np.log(1 - p)))


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, dimensions: torch.Tensor, human: pd.DataFrame
) -> tuple[float, float]:
    """The choice temperature that best explains the humans, and its per-trial NLL."""

    def nll(log_temperature: float) -> float:
        p = correct_probability(logits, labels, float(np.exp(log_temperature)))
        return human_nll(curve_by_dimension(p, dimensions), human)

    best = minimize_scalar(nll, bounds=(np.log(1e-2), np.log(1e3)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x)), float(best.fun)
