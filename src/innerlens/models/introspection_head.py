"""The introspection model: the head, and the language model + head as one module whose forward
also returns the live target at the chosen token."""
from __future__ import annotations

from typing import Any

import torch

from innerlens.models.hooks import hook_layer, residual_after


def at_position(activations: torch.Tensor, last: torch.Tensor, position: int | None) -> torch.Tensor:
    """(batch, pos, units) -> (batch, units) at each text's last real token (``None``) or a fixed index."""
    rows = torch.arange(activations.shape[0], device=activations.device)
    index = last if position is None else torch.full_like(last, position)
    return activations[rows, index]


class IntrospectionHead(torch.nn.Module):
    def __init__(self, d_model: int, outputs: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(d_model, outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class Predictor(torch.nn.Module):
    """The language model and the head; one forward gives the prediction and the live target."""

    def __init__(self, bridge: torch.nn.Module, head: IntrospectionHead, feature_layer: int, target_hook: str, position: int | None,
                 target_gradient: bool = False) -> None:
        super().__init__()
        self.bridge, self.head = bridge, head
        self.feature_hook, self.target_hook, self.position = residual_after(feature_layer), target_hook, position
        self.stop_at_layer = max(feature_layer, hook_layer(target_hook)) + 1
        self.target_gradient = target_gradient  # live_gradient: the loss reaches the target's own computation

    def forward(self, ids: torch.Tensor, last: torch.Tensor, neuron: int) -> tuple[torch.Tensor, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}

        def keep(name: str) -> Any:
            def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
                captured[name] = at_position(activation, last, self.position)
                return activation

            return hook

        names = {self.feature_hook, self.target_hook}
        self.bridge.run_with_hooks(ids, fwd_hooks=[(n, keep(n)) for n in names], stop_at_layer=self.stop_at_layer)
        target = captured[self.target_hook][:, neuron]
        return self.head(captured[self.feature_hook]).squeeze(-1), target if self.target_gradient else target.detach()
