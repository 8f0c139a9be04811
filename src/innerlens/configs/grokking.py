"""grokking's options (see innerlens.families.grokking for the experiment)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from innerlens.config import StepConfig, non_negative, open_fraction, option, positive, probability
from innerlens.configs.model_shape import ModelShape
from innerlens.data.catalog import MODULAR_OPERATIONS
from innerlens.search_space import SearchSpec

FAMILY = "grokking"
TASKS = (*MODULAR_OPERATIONS, "shortcut")


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(math.isqrt(n)) + 1))


def _odd_prime(p: int) -> str | None:
    return None if p > 2 and _is_prime(p) else f"must be an odd prime (the Fourier analyses and division need one), got {p}"


@dataclass(frozen=True)
class GrokkingConfig(ModelShape, StepConfig):
    family_name = FAMILY
    search = SearchSpec(
        metric="val/acc",
        direction="maximize",
        space=lambda trial: {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 0.1, 3.0, log=True),
        },
    )

    train_fraction: float = option(0.3, "Fraction of all a∘b pairs used for training (0.3 in Nanda et al.).", check=open_fraction)
    val_fraction: float = option(0.35, "Fraction used for validation (selection, transition detection).", check=open_fraction)
    test_fraction: float = option(0.35, "Fraction held out for reporting only.", check=open_fraction)
    task: str = option(
        "add",
        "a∘b mod p for add|sub|mul|div, or shortcut: add with a token that equals the answer on "
        "--shortcut-strength of the training rows only (simplicity bias).",
        choices=TASKS,
    )
    p: int = option(113, "Modulus: an odd prime.", check=_odd_prime)
    shortcut_strength: float = option(0.9, "shortcut task: share of training rows whose shortcut token is the answer.", check=probability)
    n_layers: int = option(1, "Transformer blocks.", check=positive)
    d_model: int = option(128, "Residual stream width.", check=positive)
    n_heads: int = option(4, "Attention heads (n_heads x d_head must equal d_model).", check=positive)
    d_head: int = option(32, "Width of each head (n_heads x d_head must equal d_model).", check=positive)
    d_mlp: int = option(512, "MLP hidden width.", check=positive)
    act_fn: str = option("relu", "MLP activation.", choices=("relu", "gelu"))
    normalization: str = option("none", "LayerNorm or none (Nanda et al. use none).", choices=("none", "LN"))
    init: str = option("native", "Initialisation: native (TransformerLens: normal, std 0.8/sqrt(d_model), W_O and W_out a further 1/sqrt(2)) or nanda (Nanda et al. 2023: std 1/sqrt(d_model), unembedding 1/sqrt(d_vocab)); biases zero in both.", choices=("native", "nanda"))
    weight_decay: float = option(1.0, "AdamW weight decay (strong decay drives generalization on modular tasks).", check=non_negative)
    beta1: float = option(0.9, "AdamW beta1.", check=probability)
    beta2: float = option(0.98, "AdamW beta2.", check=probability)
    warmup_steps: int = option(10, "Linear learning-rate warm-up steps.", check=non_negative)
    batch_size: int = option(0, "Examples per step; 0 = full batch (the published setup).", check=non_negative)
    loss_dtype: str = option(
        "float64", "Precision of the log-softmax in the loss (float32 underflows near loss 1e-7 and spikes).", choices=("float64", "float32")
    )
    max_steps: int = option(20000, "Optimisation steps (a multiple of --eval-every).", check=positive)
    eval_every: int = option(100, "Steps between evaluations (metrics, selection).", check=positive)
    patience: int = option(0, "Stop after this many evaluations without better val/acc (0: never; grokking needs patience).", check=non_negative)
    analysis_every: int = option(1000, "Steps between progress measures, attention and embedding analyses (a multiple of --eval-every; 0: never).", check=non_negative)
    snapshots: int = option(16, "Model snapshots at log-spaced steps kept as artifacts for `innerlens analyze`.", check=non_negative)
    key_frequencies: int = option(5, "Number of key Fourier frequencies for restricted/excluded loss.", check=positive)
    memorization_threshold: float = option(0.99, "Train accuracy that marks memorization.", check=probability)
    generalization_threshold: float = option(0.99, "Validation accuracy that marks generalization.", check=probability)
    dashboard: bool = option(True, "Write the interactive plotly dashboard (figures/dashboard.html).")
    tsne: bool = option(False, "Also draw t-SNE maps of the embeddings at the snapshots (slower).")

    def check(self) -> str | None:
        if self.n_heads * self.d_head != self.d_model:
            return f"--n-heads {self.n_heads} x --d-head {self.d_head} must equal --d-model {self.d_model}"
        if self.analysis_every % self.eval_every:
            return f"--analysis-every {self.analysis_every} must be a multiple of --eval-every {self.eval_every}"
        rows = self.p * (self.p - 1) if self.task == "div" else self.p * self.p
        if min(int(rows * self.val_fraction), int(rows * self.test_fraction), int(rows * self.train_fraction)) < 1:
            return f"--p {self.p} has {rows} pairs: too few for the split fractions; use a larger p"
        if self.batch_size > int(rows * self.train_fraction):
            return f"--batch-size {self.batch_size} exceeds the {int(rows * self.train_fraction)} training pairs; use 0 for full batch"
        return None

    @property
    def tokens(self) -> list[str]:
        """Names of the input positions."""
        return ["a", "b", "shortcut", "="] if self.task == "shortcut" else ["a", "b", "="]

    @property
    def fourier_ready(self) -> bool:
        """Progress measures are defined for addition (Fourier features of a + b)."""
        return self.task in ("add", "shortcut")
