"""TransformerLens hook names, spelled once (importable without torch: options list them)."""
from __future__ import annotations

# The activations introspection can target, by layer type: the hook that holds them.
LAYER_TYPES = {"mlp_out": "blocks.{layer}.mlp.hook_post", "resid_post": "blocks.{layer}.hook_resid_post"}


FINAL_RESIDUAL = "unembed.hook_in"  # the residual stream the unembedding reads (a TransformerLens 4 bridge's name)


def activation(layer_type: str, layer: int) -> str:
    """``mlp_out`` = the MLP's post-activation neurons (d_mlp wide); ``resid_post`` = the block's output (d_model)."""
    return LAYER_TYPES[layer_type].format(layer=layer)


def resid_post(layer: int) -> str:
    """Hook name of a block's output residual stream."""
    return f"blocks.{layer}.hook_resid_post"


def attention_out(layer: int) -> str:
    """Hook name of a block's attention output, before it is added to the residual stream."""
    return f"blocks.{layer}.hook_attn_out"


def attention_pattern(layer: int) -> str:
    """Hook name of a block's attention pattern (batch, head, query, key)."""
    return f"blocks.{layer}.attn.hook_pattern"


def residual_after(layer: int) -> str:
    """The residual stream after block ``layer``; -1 is the stream entering block 0 (the embeddings)."""
    return "blocks.0.hook_resid_pre" if layer == -1 else resid_post(layer)


def hook_layer(name: str) -> int:
    """The block a ``blocks.{layer}...`` hook belongs to."""
    return int(name.split(".")[1])
