"""A causal TransformerLens model over continuous inputs, one logit per step.

Episode steps are vectors (previous label + object features), not tokens, so they enter
through a linear input projection and the bridge runs from ``start_at_layer=0``. Positions are
rotary (as in the metalign paper's model): the label of step t-1 sits at step t, so the first
thing the model must learn is a previous-step head, and relative positions make that quick; every block keeps its TransformerLens hook points, which is where the
representations for CKA are read (``blocks.{l}.hook_resid_post``).
"""
from __future__ import annotations

import torch

from innerlens.models.hooks import resid_post
from innerlens.models.transformer import native_transformer

INPUT_LAYER = "input"


class MetaLearner(torch.nn.Module):
    def __init__(
        self,
        input_dim: int,
        *,
        label_channels: int,
        sequence_length: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_mlp: int,
        seed: int,
        device: torch.device,
    ) -> None:
        super().__init__()
        self.input_projection = torch.nn.Linear(input_dim, d_model, device=device)
        with torch.no_grad():  # the label is 2 of input_dim channels: start it as loud as the features together
            self.input_projection.weight[:, :label_channels].normal_(0.0, 1.0)
        self.transformer = native_transformer(
            d_vocab=1,  # token embeddings are never used: inputs start at block 0
            d_vocab_out=1,
            n_ctx=sequence_length,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_mlp=d_mlp,
            act_fn="gelu",
            positional_embedding="rotary",
            seed=seed,
            device=device,
        )
        self.n_layers = n_layers

    def residual_input(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.input_projection(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(episodes, steps) logits of label 1 at every step, each seeing only the steps before it."""
        return self.transformer(self.residual_input(inputs), start_at_layer=0)[..., 0]

    @torch.no_grad()
    def representations(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Last-step residual stream after the input projection and after every block."""
        residual = self.residual_input(inputs)
        names = [resid_post(layer) for layer in range(self.n_layers)]
        _, cache = self.transformer.run_with_cache(residual, start_at_layer=0, names_filter=lambda name: name in names)
        layers = {INPUT_LAYER: residual[:, -1]}
        layers.update({f"layer_{layer}": cache[resid_post(layer)][:, -1] for layer in range(self.n_layers)})
        return layers
