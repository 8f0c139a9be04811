"""The transformer substrate of self-modeling: a TransformerLens classifier read at the last token,
plus one auxiliary head per self-modeled layer (or the input control's head)."""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F

from innerlens.configs.self_modeling import CONTROL_TARGET, PAPER_WIRING
from innerlens.data.tasks import SequenceTask
from innerlens.models.hooks import FINAL_RESIDUAL, resid_post
from innerlens.models.transformer import (
    last_position_residuals,
    native_transformer,
    release_transient_captures,
    supports_plain_forward,
    unembedding,
)

CONTROL = "input_control"  # the non-self control: the same auxiliary output regresses a fixed random projection of the input
UNEMBED_INPUT = "unembed_input"  # paper_wiring's target: what the unembedding reads (``unembed.hook_in``)


def self_model_layers(variant: str, n_layers: int) -> list[int]:
    """Layers (transformer blocks or MLP hidden layers) whose output the self-model predicts (none for
    the baseline and the control)."""
    return {
        "baseline": [],
        CONTROL: [],
        "first_layer": [0],
        "middle_layer": [n_layers // 2],
        "last_layer": [n_layers - 1],
        "all_layers": list(range(n_layers)),
        PAPER_WIRING: [],  # no block: its target is the unembedding's input (``UNEMBED_INPUT``)
    }[variant]


class SelfModelingNet(torch.nn.Module):
    """A TransformerLens classifier read at the last token, plus one self-model head per layer."""

    def __deepcopy__(self, memo: dict[int, object]) -> "SelfModelingNet":
        """A copy, after dropping the tensors TransformerLens 4 attention bridges keep between calls (a copy's
        forward leaves one on the original, which could then not be copied again: the LLC's chains copy it)."""
        release_transient_captures(self)
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def __init__(self, task: SequenceTask, *, d_model: int, n_layers: int, n_heads: int, d_mlp: int, seed: int,
                 variant: str, detach_target: bool, device: torch.device) -> None:
        super().__init__()
        self.transformer = native_transformer(
            d_vocab=task.vocab_size,
            d_vocab_out=task.num_classes,
            n_ctx=task.seq_len,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_mlp=d_mlp,
            seed=seed,
            device=device,
        )
        self.layers: list[int | str] = [*self_model_layers(variant, n_layers), *([CONTROL_TARGET] if variant == CONTROL else []),
                                         *([UNEMBED_INPUT] if variant == PAPER_WIRING else [])]
        self.detach_target = detach_target
        self.heads = torch.nn.ModuleDict(
            {str(layer): torch.nn.Linear(d_model, d_model) for layer in self.layers}
        ).to(device)
        if variant == CONTROL:  # fixed, not trained: a residual-wide target that is not the network's own
            generator = torch.Generator().manual_seed(seed + 7_919)
            projection = torch.randn(task.seq_len * task.vocab_size, d_model, generator=generator) / task.seq_len**0.5
            self.register_buffer("input_projection", projection.to(device))
        self.plain = supports_plain_forward(self.transformer)

    @torch.no_grad()
    def relabel_classes(self, order: torch.Tensor) -> None:
        """Reorder the unembedding's class rows to ``order`` (the labels must be mapped alike): the same
        function in exact arithmetic, other rounding wherever the classes are summed over."""
        for parameter in unembedding(self.transformer).parameters():
            parameter.copy_(parameter[order])

    def task_weight_matrices(self) -> list[torch.Tensor]:
        """The classifier alone (the transformer's weight matrices, not the self-model heads)."""
        return [p.detach() for p in self.transformer.parameters() if p.ndim >= 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the last token (task output only)."""
        if self.plain:
            return last_position_residuals(self.transformer, x)[0]
        return self.transformer(x)[:, -1]

    def forward_with_self_model(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Logits and, per self-modeled layer, (prediction, target activation) at the last token.

        The prediction reads ``unembed.hook_in`` and the target is ``blocks.{l}.hook_resid_post``;
        both come from the plain-module forward (the same numbers as the hooks, tested), which
        keeps the training step close to plain PyTorch.
        """
        if not self.layers:
            return self(x), {}
        blocks = [layer for layer in self.layers if isinstance(layer, int)]
        if self.plain:
            logits, final, residuals = last_position_residuals(self.transformer, x)
            targets: dict[int | str, torch.Tensor] = {layer: residuals[layer] for layer in blocks}
        else:
            logits, final, targets = self._hooked(x, blocks)
        if CONTROL_TARGET in self.layers:
            one_hot = F.one_hot(x, self.input_projection.shape[0] // x.shape[1]).flatten(1).to(final.dtype)
            targets[CONTROL_TARGET] = one_hot @ self.input_projection
        if UNEMBED_INPUT in self.layers:  # the paper's wiring: the output layer predicts its own input
            targets[UNEMBED_INPUT] = final
        pairs = {}
        for layer in self.layers:
            target = targets[layer]
            pairs[layer] = (self.heads[str(layer)](final), target.detach() if self.detach_target else target)
        return logits, pairs

    def _hooked(self, x: torch.Tensor, layers: list[int]) -> tuple[torch.Tensor, torch.Tensor, dict[int | str, torch.Tensor]]:
        """The same as the plain path, read through TransformerLens hooks (models it does not cover)."""
        captured: dict[str, torch.Tensor] = {}

        def keeper(name: str) -> Callable[[torch.Tensor, object], torch.Tensor]:
            # Keyed by the name we asked for: the bridge may report an aliased hook name.
            def keep(activation: torch.Tensor, hook: object) -> torch.Tensor:
                captured[name] = activation[:, -1]
                return activation

            return keep

        names = [resid_post(layer) for layer in layers] + [FINAL_RESIDUAL]
        logits = self.transformer.run_with_hooks(x, fwd_hooks=[(name, keeper(name)) for name in names])[:, -1]
        return logits, captured[FINAL_RESIDUAL], {layer: captured[resid_post(layer)] for layer in layers}
