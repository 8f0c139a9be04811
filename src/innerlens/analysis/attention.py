"""Per-head attention statistics: where a query position looks and how spread out it is."""
from __future__ import annotations

import torch


def head_statistics(pattern: torch.Tensor, query: int = -1) -> dict[str, torch.Tensor]:
    """From ``blocks.{l}.attn.hook_pattern`` (batch, heads, query, key), at one query position.

    Returns ``share`` (heads, keys): mean attention to each key position, and ``entropy``
    (heads,): mean entropy in nats of the attention distribution (0 = one position, log k = uniform).
    """
    rows = pattern[:, :, query, :].to(torch.float64)
    entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1)
    return {"share": rows.mean(0), "entropy": entropy.mean(0)}
