"""One self-modeling minibatch: the task loss plus the weighted self-model loss, and an epoch's metrics
(shared by a single run and by stacked seeds)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from innerlens.configs.self_modeling import CONTROL_TARGET, SelfModelingConfig


def self_model_loss(kind: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain MSE lets a transformer shrink its residual stream until the task is never learned
    (seen with weight 1 at the default size); dividing by the target's mean square removes that exit."""
    mse = F.mse_loss(prediction, target)
    if kind == "mse":
        return mse
    return mse / target.detach().pow(2).mean().clamp_min(1e-8)


def training_loss(model: torch.nn.Module, config: SelfModelingConfig, x: torch.Tensor,
                  y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int | str, torch.Tensor]]:
    """(loss to minimise, task loss, logits, self-model loss per layer) of one minibatch of a
    ``SelfModelingNet`` (anything with its ``forward_with_self_model``)."""
    logits, pairs = model.forward_with_self_model(x)
    task_loss = F.cross_entropy(logits, y)
    layer_losses = {layer: self_model_loss(config.self_model_loss, prediction, target) for layer, (prediction, target) in pairs.items()}
    loss = task_loss
    if layer_losses:
        loss = loss + aux_weight(model, config) * torch.stack(list(layer_losses.values())).mean()
    return loss, task_loss, logits, layer_losses


def aux_weight(model: torch.nn.Module, config: SelfModelingConfig) -> torch.Tensor | float:
    """The auxiliary loss's weight: ``--self-model-weight``, or with ``--self-model-grad-share`` the
    weight last matched to that share (a buffer of the model, so checkpoints carry it)."""
    matched = getattr(model, "aux_weight", None)
    return matched if matched is not None else config.self_model_weight


def match_gradient_share(model: torch.nn.Module, config: SelfModelingConfig, x: torch.Tensor, y: torch.Tensor,
                         smooth: bool = True) -> float:
    """Set the auxiliary weight so that, on this minibatch, the weighted auxiliary gradient is
    ``share`` of the two gradient norms: ‖w g_aux‖ / (‖g_task‖ + ‖w g_aux‖) = share, over every
    parameter. Smoothed (half the old weight, half the new) so one minibatch cannot swing it; the
    first match is not (``smooth=False``): the starting weight is a guess, and halfway from a bad
    guess can be far too strong for the whole first epoch. At most ``--self-model-max-weight``.
    Returns the share the old weight had."""
    share = config.self_model_grad_share
    assert share is not None and hasattr(model, "aux_weight")
    logits, pairs = model.forward_with_self_model(x)
    task = F.cross_entropy(logits, y)
    aux = torch.stack([self_model_loss(config.self_model_loss, p, t) for p, t in pairs.values()]).mean()
    parameters = [p for p in model.parameters() if p.requires_grad]
    norms = []
    for loss in (task, aux):
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        norms.append(torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros((), device=x.device))))
    task_norm, aux_norm = norms
    old = model.aux_weight.clone()
    before = (old * aux_norm / (task_norm + old * aux_norm)).item()
    target = share / (1 - share) * task_norm / aux_norm.clamp_min(1e-12)
    if config.self_model_max_weight is not None:
        target = target.clamp(max=config.self_model_max_weight)
    model.aux_weight.copy_(0.5 * old + 0.5 * target.detach() if smooth else target.detach())
    return before


def aux_loss_key(layer: int | str) -> str:
    """``selfmodel/layer_<l>/loss`` for a self-modeled layer, ``selfmodel/<name>/loss`` for another of the
    network's own activations (``unembed_input``); ``aux/input/loss`` for the control's target."""
    if isinstance(layer, int):
        return f"selfmodel/layer_{layer}/loss"
    return f"aux/{layer}/loss" if layer == CONTROL_TARGET else f"selfmodel/{layer}/loss"


def round_metrics(loss_sum: torch.Tensor, correct: torch.Tensor, layer_sums: dict[int | str, torch.Tensor], n: int) -> dict[str, float]:
    """One epoch's training metrics from its on-device sums (task loss only in ``train/loss``)."""
    metrics = {"train/loss": loss_sum.item() / n, "train/acc": correct.item() / n}
    metrics.update({aux_loss_key(layer): value.item() / n for layer, value in layer_sums.items()})
    return metrics
