"""From-scratch TransformerLens models: ``TransformerBridge.boot_native``, no download."""
from __future__ import annotations

import torch
import torch.nn.functional as F
import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native to TransformerBridge)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities.activation_functions import apply_softcap


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


@torch.no_grad()
def nanda_init_(model: TransformerBridge, *, d_model: int, d_vocab: int, seed: int) -> None:
    """Re-initialise as Nanda et al. 2023 did: every weight normal with std 1/sqrt(d_model), the
    unembedding 1/sqrt(d_vocab), biases zero. TransformerLens's native init has std 0.8/sqrt(d_model),
    W_O and W_out a further 1/sqrt(2): a smaller initial weight norm, which grokking's timing depends on."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            parameter.zero_()
            continue
        std = d_vocab**-0.5 if name.startswith("head.") else d_model**-0.5
        parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


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


def final_position_logits(model: TransformerBridge, tokens: torch.Tensor) -> torch.Tensor:
    """``model(tokens)[:, -1]`` computed without the work no loss on the last position needs.

    The last block only needs its query, attention output, MLP and unembedding at the final
    position (keys and values still come from every position), which on a three-token
    modular-arithmetic input cuts a training step's arithmetic by more than half. The result
    and its gradients equal the full forward's (to float rounding, tested); hooks do not fire,
    so analyses that read activations use the full forward. Models the plain path does not
    cover (:func:`supports_plain_forward`) take the full forward.
    """
    if not supports_plain_forward(model):
        return model(tokens)[:, -1]
    return last_position_residuals(model, tokens)[0]


def _raw(module: torch.nn.Module) -> torch.nn.Module:
    """The plain torch module inside a bridge component (hook points skipped)."""
    return getattr(module, "original_component", None) or module


def unembedding(model: TransformerBridge) -> torch.nn.Module:
    """The plain module that maps the final residual to the class logits."""
    return _raw(model.original_model.head)


def _attend(attention: torch.nn.Module, attn_in: torch.Tensor, queries: slice) -> torch.Tensor:
    """NativeAttention's output for the query positions ``queries`` (keys and values from every position)."""
    batch, seq, _ = attn_in.shape
    heads, d_head = attention.n_heads, attention.d_head
    query = _raw(attention.q)(attn_in[:, queries])
    n_queries = query.shape[1]
    assert n_queries in (1, seq), "every position or the final one (the masks below assume so)"
    query = query.view(batch, n_queries, heads, d_head).transpose(1, 2)
    key = _raw(attention.k)(attn_in).view(batch, seq, attention.n_kv_heads, d_head).transpose(1, 2)
    value = _raw(attention.v)(attn_in).view(batch, seq, attention.n_kv_heads, d_head).transpose(1, 2)
    if attention.kv_repeats > 1:
        key, value = key.repeat_interleave(attention.kv_repeats, 1), value.repeat_interleave(attention.kv_repeats, 1)
    # Step by step for capped scores (the bridge's own arithmetic) and inside torch.func transforms
    # (stacked seeds, the vectorised sampler): vmap has no batching rule for the CPU SDPA kernel.
    if attention.attn_scores_soft_cap > 0 or torch._C._functorch.is_functorch_wrapped_tensor(query):
        scores = apply_softcap(query @ key.transpose(-2, -1) / attention.scale, attention.attn_scores_soft_cap)
        if n_queries > 1:
            scores = scores.masked_fill(attention.causal_mask[:seq, :seq][-n_queries:], float("-inf"))
        attended = scores.softmax(-1) @ value
    else:  # one fused kernel: on a few tokens, far fewer tiny matmuls and softmaxes than the step-by-step path
        # All queries: the causal mask; the final query alone sees every key, so no mask.
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=n_queries > 1, scale=1 / attention.scale)
    return _raw(attention.o)(attended.transpose(1, 2).reshape(batch, n_queries, -1))


def _block(block: torch.nn.Module, hidden: torch.Tensor, last_only: bool) -> torch.Tensor:
    """One NativeBlock on plain modules; ``last_only`` computes the final position's output only."""
    native = _raw(block)
    attention = _raw(native.attn)
    queries = slice(-1, None) if last_only else slice(None)
    out = hidden[:, queries] + _attend(attention, _raw(native.ln1)(hidden), queries)
    if not native.cfg.attn_only:
        mlp = _raw(native.mlp)
        out = out + _raw(mlp.fc_out)(mlp.act(_raw(mlp.fc_in)(_raw(native.ln2)(out))))
    return out


def supports_plain_forward(model: TransformerBridge) -> bool:
    """Native models with learned absolute positions and causal attention (what the shortcuts cover)."""
    native = model.original_model
    cfg = model.cfg
    return (hasattr(native, "tok_embed") and native.pos is not None and cfg.attention_dir == "causal"
            and all(_raw(_raw(b).mlp).ln is None for b in native.layers if not cfg.attn_only))


def last_position_residuals(model: TransformerBridge, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(logits, ``unembed.hook_in``, [``blocks.{l}.hook_resid_post``]) at the last token, on plain modules.

    The training hot path: the same numbers the hooked forward gives (tested), without a hook
    call per component, and with the last block computed at the final position only.
    """
    native = model.original_model
    seq = tokens.shape[1]
    hidden = _raw(native.tok_embed)(tokens) + _raw(native.pos)(torch.arange(seq, device=tokens.device))
    residuals = []
    for index, block in enumerate(native.layers):
        hidden = _block(block, hidden, last_only=index == len(native.layers) - 1)
        residuals.append(hidden[:, -1])
    final = _raw(native.ln_out)(hidden[:, -1])
    return apply_softcap(unembedding(model)(final), native.output_logits_soft_cap), final, residuals
