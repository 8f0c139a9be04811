"""From-scratch TransformerLens models: ``TransformerBridge.boot_native``, no download."""
from __future__ import annotations

import torch
import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native to TransformerBridge)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge


def native_transformer(
    *,
    d_vocab: int,
    d_vocab_out: int,
    n_ctx: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    d_mlp: int,
    act_fn: str = "relu",
    normalization: str | None = "LN",
    positional_embedding: str = "standard",
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TransformerBridge:
    """A causal transformer with TransformerLens hook points (``blocks.{l}.hook_resid_post`` ...)."""
    assert d_model % n_heads == 0, "validated by the family config"
    config = TransformerBridgeConfig(
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_head=d_model // n_heads,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        n_ctx=n_ctx,
        act_fn=act_fn,
        normalization_type=normalization,
        positional_embedding_type=positional_embedding,
        seed=seed,
    )
    return TransformerBridge.boot_native(config, device=device)


def resid_post(layer: int) -> str:
    """Hook name of a block's output residual stream."""
    return f"blocks.{layer}.hook_resid_post"


def release_transient_captures(model: torch.nn.Module) -> None:
    """Drop the residual tensors TransformerLens 4 attention bridges keep between calls.

    A deep-copied bridge keeps forward pre-hooks bound to the *original* attention modules,
    so a copy's forward leaves a graph-attached tensor on the original, which then cannot be
    deep-copied again (devinterp copies the model once per SGLD chain). Clearing it is safe:
    the capture is rewritten at the start of every block's forward.
    """
    for module in model.modules():
        if getattr(module, "_captured_pre_ln_residual", None) is not None:
            module._captured_pre_ln_residual = None
