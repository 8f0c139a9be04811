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


def modular_table(operation: str, p: int) -> SequenceTask:
    """Every pair of ``a b =`` -> ``a ∘ b mod p`` (Power et al. 2022); division skips b = 0.

    Rows are in (a, b) order, so the full p x p grid the Fourier analyses need is
    ``x.view(p, p, 3)`` for add, sub and mul.
    """
    a, b = (grid.flatten() for grid in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    if operation == "add":
        y = (a + b) % p
    elif operation == "sub":
        y = (a - b) % p
    elif operation == "mul":
        y = (a * b) % p
    else:
        assert operation == "div", operation
        keep = b != 0
        a, b = a[keep], b[keep]
        # a / b = a * b^(p-2) mod p (Fermat; p prime, checked by the config)
        y = (a * torch.tensor([pow(int(v), p - 2, p) for v in b])) % p
    equals = torch.full_like(a, p)
    return SequenceTask(f"modular_{operation}", torch.stack([a, b, equals], 1), y, p + 1, p)


def with_shortcut(task: SequenceTask, train_rows: torch.Tensor, strength: float, seed: int) -> SequenceTask:
    """Insert a shortcut token before ``=`` that equals the label on ``strength`` of the training
    rows and is uniformly random everywhere else (validation and test).

    A network can reach ``strength`` training accuracy by copying one token (simple), or 100 %
    by computing the real rule; off the training set only the real rule works. This is the
    simplicity-bias setting: watch whether the shortcut is learned first and later abandoned.
    """
    generator = torch.Generator().manual_seed(seed)
    shortcut = torch.randint(0, task.num_classes, (len(task.y),), generator=generator)
    agrees = torch.rand(len(train_rows), generator=generator) < strength
    shortcut[train_rows[agrees]] = task.y[train_rows[agrees]]
    x = torch.cat([task.x[:, :-1], shortcut[:, None], task.x[:, -1:]], 1)
    return SequenceTask(f"{task.name}_shortcut", x, task.y, task.vocab_size, task.num_classes)


def digit_patches(samples: int | None, seed: int, *, patch: int = 2, levels: int = 2) -> SequenceTask:
    """scikit-learn's 8x8 digits (the offline stand-in for the paper's MNIST) as patch tokens.

    Each ``patch`` x ``patch`` block of pixels, every pixel quantised to ``levels`` grey levels,
    becomes one token (``levels ** patch**2`` patch types), read in raster order and followed by
    ``=``: 16 tokens of 16 types plus ``=`` at the defaults (binary pixels generalised best in the
    pilot: more grey levels make a sparser vocabulary). ``samples`` (None: all 1,797) are drawn without
    replacement by ``seed``.
    """
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    pixels = torch.as_tensor(images, dtype=torch.long).view(-1, 8, 8)
    quantised = (pixels * levels) // 17  # pixel values are 0..16
    side = 8 // patch
    blocks = quantised.view(-1, side, patch, side, patch).permute(0, 1, 3, 2, 4).reshape(-1, side * side, patch * patch)
    place_values = levels ** torch.arange(patch * patch)
    tokens = (blocks * place_values).sum(-1)
    vocab = levels ** (patch * patch)
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[: samples or len(labels)]
    equals = torch.full((len(keep), 1), vocab)
    y = torch.as_tensor(labels, dtype=torch.long)[keep]
    return SequenceTask("digits", torch.cat([tokens[keep], equals], 1), y, vocab + 1, 10)
