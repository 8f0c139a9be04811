"""The final-position shortcut computes exactly what the full forward computes at the last position."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from innerlens.models.transformer import final_position_logits, native_transformer


@pytest.mark.parametrize(
    "layers, normalization, act_fn, positional",
    [(1, None, "relu", "standard"), (2, "LN", "gelu", "standard"), (3, "RMS", "relu", "standard"), (2, "LN", "gelu", "rotary")],
)
def test_final_position_logits_and_gradients_equal_the_full_forward(layers, normalization, act_fn, positional) -> None:
    model = native_transformer(d_vocab=11, d_vocab_out=7, n_ctx=5, d_model=16, n_layers=layers, n_heads=4, d_mlp=32,
                               act_fn=act_fn, normalization=normalization, positional_embedding=positional, seed=1)
    tokens = torch.randint(0, 11, (9, 5), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 7, (9,), generator=torch.Generator().manual_seed(1))

    def gradients(logits: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        F.cross_entropy(logits, labels).backward()
        return [p.grad.clone() for p in model.parameters()]

    # Two float32 paths through the same arithmetic differ by rounding that grows with depth: allow
    # 64 ulps per block relative to each tensor's largest entry, not what one CPU happened to produce.
    tolerance = 64 * layers * torch.finfo(torch.float32).eps

    def assert_rounding_close(a: torch.Tensor, b: torch.Tensor) -> None:
        assert (a - b).abs().max() <= tolerance * max(1.0, b.abs().max().item()), (a - b).abs().max()

    assert_rounding_close(final_position_logits(model, tokens), model(tokens)[:, -1])
    for a, b in zip(gradients(final_position_logits(model, tokens)), gradients(model(tokens)[:, -1]), strict=True):
        assert_rounding_close(a, b)


def test_final_position_logits_differ_when_an_earlier_token_changes() -> None:
    """Keys and values still come from every position: the answer depends on the operands."""
    model = native_transformer(d_vocab=11, d_vocab_out=7, n_ctx=3, d_model=16, n_layers=1, n_heads=4, d_mlp=32, normalization=None)
    tokens = torch.tensor([[1, 2, 10]])
    assert not torch.allclose(final_position_logits(model, tokens), final_position_logits(model, torch.tensor([[3, 2, 10]])))
