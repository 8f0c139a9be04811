"""The selector head: reads a frozen generator's hidden states at two layers and scores a text.

Per feature layer one attention block like the generator's but without the residual connection:
LayerNorm, a query only at the last real token, keys and values from every position up to it,
scaled softmax over positions, heads projected back to the model width. The blocks' outputs are
concatenated and go through a residual GELU MLP (hidden width 3x) to 2 logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def valid_heads(d_model: int, wanted: int) -> int:
    """``wanted`` heads when they divide ``d_model``, else the nearest count that does (ties: more heads)."""
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
    return min(divisors, key=lambda h: (abs(h - wanted), -h))


class FinalTokenAttention(torch.nn.Module):
    """LayerNorm -> attention from the last real token over all positions -> one vector per sequence."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        assert d_model % n_heads == 0, "use valid_heads()"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.norm = torch.nn.LayerNorm(d_model)
        self.query = torch.nn.Linear(d_model, d_model)
        self.key = torch.nn.Linear(d_model, d_model)
        self.value = torch.nn.Linear(d_model, d_model)
        self.out = torch.nn.Linear(d_model, d_model)

    def forward(self, hidden: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden`` (batch, pos, d), ``last`` (batch,) -> output (batch, d), weights (batch, heads, pos)."""
        batch, positions, _ = hidden.shape
        x = self.norm(hidden)
        final = x[torch.arange(batch, device=x.device), last]
        q = self.query(final).view(batch, self.n_heads, self.d_head)
        k = self.key(x).view(batch, positions, self.n_heads, self.d_head)
        v = self.value(x).view(batch, positions, self.n_heads, self.d_head)
        scores = torch.einsum("bhd,bphd->bhp", q, k) / math.sqrt(self.d_head)
        beyond = torch.arange(positions, device=x.device)[None, :] > last[:, None]  # padding after the final token
        weights = torch.softmax(scores.masked_fill(beyond[:, None, :], float("-inf")), dim=-1)
        mixed = torch.einsum("bhp,bphd->bhd", weights, v).reshape(batch, -1)
        return self.out(mixed), weights  # no residual: the block's output is only what it attended to


class SelectorHead(torch.nn.Module):
    def __init__(self, d_model: int, n_layers_read: int, n_heads: int, mlp_ratio: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(FinalTokenAttention(d_model, n_heads) for _ in range(n_layers_read))
        width = d_model * n_layers_read
        self.mlp_in = torch.nn.Linear(width, mlp_ratio * width)
        self.mlp_out = torch.nn.Linear(mlp_ratio * width, width)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(width, 2)

    def forward(self, features: list[torch.Tensor], last: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Hidden states per read layer -> 2 logits and each block's attention weights."""
        outputs, weights = zip(*(block(hidden, last) for block, hidden in zip(self.blocks, features)))
        x = torch.cat(outputs, dim=-1)
        x = x + self.dropout(self.mlp_out(F.gelu(self.mlp_in(x))))
        return self.classifier(x), list(weights)
