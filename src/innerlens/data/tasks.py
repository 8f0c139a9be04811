"""Generated sequence-classification tasks read at the last token.

Every task returns integer token sequences ``x`` (n, seq_len) and labels ``y`` (n,) whose
answer is written at the final ``=`` token, so any causal transformer can read it there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceTask:
    name: str
    x: torch.Tensor
    y: torch.Tensor
    vocab_size: int
    num_classes: int

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]


def modular_sum(p: int, samples: int, seed: int) -> SequenceTask:
    """``a b =`` -> ``(a + b) mod p``: ``samples`` distinct pairs drawn without replacement."""
    assert samples <= p * p, "validated by the config"
    generator = torch.Generator().manual_seed(seed)
    pair_ids = torch.randperm(p * p, generator=generator)[:samples]
    a, b = pair_ids // p, pair_ids % p
    equals = torch.full_like(a, p)
    return SequenceTask("modular_sum", torch.stack([a, b, equals], 1), (a + b) % p, p + 1, p)


def modular_sum_seq(p: int, samples: int, seq_len: int, seed: int) -> SequenceTask:
    """``x1 .. xk =`` -> ``sum(x) mod p``: needs attention to aggregate every position."""
    assert samples <= p**seq_len, "validated by the config"
    generator = torch.Generator().manual_seed(seed)
    seen: set[tuple[int, ...]] = set()
    rows: list[torch.Tensor] = []
    while len(rows) < samples:
        batch = torch.randint(0, p, (samples, seq_len), generator=generator)
        for row in batch:
            key = tuple(row.tolist())
            if key not in seen and len(rows) < samples:
                seen.add(key)
                rows.append(row)
    x = torch.stack(rows)
    equals = torch.full((samples, 1), p)
    return SequenceTask("modular_sum_seq", torch.cat([x, equals], 1), x.sum(1) % p, p + 1, p)
