"""The self-modeling training path against the same model written in plain PyTorch.

One epoch = train on the training set (middle_layer self-model head, AdamW, batch 256) + evaluate
val and test + weight std, the work the engine asks of a family per epoch, without tracking.
innerlens runs its own ``SelfModelingExperiment``; the plain model is a textbook pre-LN causal
transformer of the same shape (``F.scaled_dot_product_attention``, full forward, last token
read). Rounds alternate which goes first; the ratio is the median over rounds, measured in one
process on one torch thread.

Run: ``python bench/hot_path.py``; results go to ``bench/results/hot_path.json``.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

ROUNDS = 7


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, seq, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, seq, width)
        x = x + self.out(attended)
        return x + self.mlp(self.ln2(x))


class PlainSelfModeling(nn.Module):
    def __init__(self, config: SelfModelingConfig, vocab: int, classes: int, seq: int, layer: int) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, config.d_model), nn.Embedding(seq, config.d_model)
        self.blocks = nn.ModuleList(Block(config.d_model, config.n_heads, config.d_mlp) for _ in range(config.n_layers))
        self.ln, self.unembed = nn.LayerNorm(config.d_model), nn.Linear(config.d_model, classes)
        self.head, self.layer = nn.Linear(config.d_model, config.d_model), layer

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.layer:
                target = x[:, -1]
        final = self.ln(x[:, -1])
        return self.unembed(final), self.head(final), target


class PlainExperiment:
    """The same epoch as SelfModelingExperiment's, on the plain model."""

    def __init__(self, config: SelfModelingConfig, reference: SelfModelingExperiment) -> None:
        x, y = reference.data["train"]
        vocab, classes = int(max(x.max() for x, _ in reference.data.values())) + 1, int(max(y.max() for _, y in reference.data.values())) + 1
        self.config, self.data = config, reference.data
        self.model = PlainSelfModeling(config, vocab, classes, x.shape[1], reference.model.layers[0])
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        self.model.train()
        x, y = self.data["train"]
        order = torch.randperm(len(y), generator=self.generator)
        for start in range(0, len(y), self.config.batch_size):
            batch = order[start:start + self.config.batch_size]
            logits, prediction, target = self.model(x[batch])
            loss = F.cross_entropy(logits, y[batch]) + self.config.self_model_weight * F.mse_loss(prediction, target.detach())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.model.eval()
        with torch.no_grad():
            for split in ("val", "test"):
                inputs, labels = self.data[split]
                logits = self.model(inputs)[0]
                F.cross_entropy(logits, labels).item(), (logits.argmax(-1) == labels).float().mean().item()
            torch.cat([p.flatten() for p in self.model.parameters()]).std().item()


def main() -> None:
    torch.set_num_threads(1)
    config = SelfModelingConfig(variant="middle_layer", llc_every=0)
    ours = SelfModelingExperiment(config, torch.device("cpu"))
    plain = PlainExperiment(config, ours)
    epoch = 0

    def innerlens_epoch() -> None:
        nonlocal epoch
        epoch += 1
        ours.train_round(epoch)
        ours.evaluate(epoch)

    def timed(step: object) -> float:
        start = time.perf_counter()
        step()  # type: ignore[operator]
        return time.perf_counter() - start

    timed(innerlens_epoch), timed(plain.epoch)  # warm-up
    rounds = []
    for index in range(ROUNDS):
        if index % 2:
            plain_s, ours_s = timed(plain.epoch), timed(innerlens_epoch)
        else:
            ours_s, plain_s = timed(innerlens_epoch), timed(plain.epoch)
        rounds.append({"innerlens_s": ours_s, "plain_s": plain_s, "ratio": ours_s / plain_s})
        print(f"round {index + 1}: innerlens {ours_s:.3f} s, plain {plain_s:.3f} s, ratio {ours_s / plain_s:.3f}")
    ratio = statistics.median(r["ratio"] for r in rounds)
    print(f"median ratio innerlens / plain PyTorch: {ratio:.3f} (target <= 1.15)")
    out = Path(__file__).parent / "results" / "hot_path.json"
    out.write_text(json.dumps({"config": "self_modeling defaults, middle_layer", "threads": 1, "rounds": rounds,
                               "median_ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
