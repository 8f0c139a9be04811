"""The paper's self-modeling MLP (Premakumar et al. 2024, official code's ``MLP``).

input -> Linear -> ReLU (x depth) -> one output Linear of ``num_classes + sum(self-modeled widths)``
units. The first ``num_classes`` outputs are the class logits; the rest predict the post-ReLU
activations of the self-modeled hidden layers, concatenated in layer order. The self-model is
therefore a linear map of the last hidden layer, sharing the output layer with the classifier.
"""
from __future__ import annotations

import torch

from innerlens.configs.self_modeling import CONTROL_TARGET


def hidden_name(layer: int) -> str:
    """Place name of a hidden layer's post-ReLU activation (TransformerLens-style)."""
    return f"hidden.{layer}.hook_post"


class SelfModelingMLP(torch.nn.Module):
    """ReLU MLP whose output layer also predicts its own hidden activations at ``self_modeled`` layers."""

    def __init__(self, n_features: int, num_classes: int, widths: list[int], self_modeled: list[int],
                 *, detach_target: bool = True, input_control: bool = False, seed: int = 0,
                 device: torch.device | None = None) -> None:
        super().__init__()
        assert all(0 <= layer < len(widths) for layer in self_modeled), (self_modeled, widths)
        assert not (input_control and self_modeled), "the control replaces the self-model"
        self.num_classes, self.self_modeled, self.detach_target = num_classes, list(self_modeled), detach_target
        self.layers: list[int | str] = [*self.self_modeled, *([CONTROL_TARGET] if input_control else [])]
        sizes = [n_features, *widths]
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b, device=device) for a, b in zip(sizes, sizes[1:]))
        self.widths = [widths[layer] for layer in self.self_modeled] + ([widths[-1]] if input_control else [])
        self.output = torch.nn.Linear(widths[-1], num_classes + sum(self.widths), device=device)
        if input_control:  # fixed, not trained: a target as wide as the last hidden layer that is not the network's own
            generator = torch.Generator().manual_seed(seed + 7_919)
            projection = torch.randn(n_features, widths[-1], generator=generator) / n_features**0.5
            self.register_buffer("input_projection", projection.to(device))

    @torch.no_grad()
    def relabel_inputs(self, order: torch.Tensor) -> None:
        """Reorder the input features to ``order`` (the data must be indexed ``x[:, order]`` alike): the
        same function in exact arithmetic, other rounding in every first-layer sum."""
        self.hidden[0].weight.copy_(self.hidden[0].weight[:, order])
        if hasattr(self, "input_projection"):
            self.input_projection.copy_(self.input_projection[order])

    @torch.no_grad()
    def relabel_classes(self, order: torch.Tensor) -> None:
        """Reorder the output layer's class rows to ``order`` (the labels must be mapped alike): the same
        function in exact arithmetic, other rounding wherever the classes are summed over."""
        classes = slice(0, self.num_classes)
        self.output.weight[classes] = self.output.weight[classes][order]
        self.output.bias[classes] = self.output.bias[classes][order]

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's post-ReLU activation, first to last."""
        out = []
        for layer in self.hidden:
            x = torch.relu(layer(x))
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits only (what accuracy and the LLC read)."""
        return self.output(self.activations(x)[-1])[:, : self.num_classes]

    def forward_with_self_model(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and, per self-modeled layer, (prediction from the extra outputs, its activation)."""
        hidden = self.activations(x)
        out = self.output(hidden[-1])
        predictions = torch.split(out[:, self.num_classes :], self.widths, dim=1) if self.widths else ()
        pairs: dict[int | str, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer, prediction in zip(self.layers, predictions):
            target = x @ self.input_projection if layer == CONTROL_TARGET else hidden[layer]
            pairs[layer] = (prediction, target.detach() if self.detach_target else target)
        return out[:, : self.num_classes], pairs

    def task_weight_matrices(self) -> list[torch.Tensor]:
        """The classifier alone: every hidden layer's matrix and the output rows of the classes
        (not the self-model's rows; biases left out, as for the transformer)."""
        return [*(layer.weight.detach() for layer in self.hidden), self.output.weight.detach()[: self.num_classes]]
