"""generator's options (see innerlens.families.generator for the experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.config import StepConfig, non_negative, option, positive

FAMILY = "generator"
REGISTERED_NAME = "innerlens-generator"


@dataclass(frozen=True)
class GeneratorConfig(StepConfig):
    family_name = FAMILY
    hidden_fields = ("target_accuracy", "target_split")  # a language model's loss has no accuracy to reach

    model: str = option("tiny", "Model to fine-tune: tiny (trained here on the generated corpus), tiny-random (untrained), a local Hugging Face checkpoint directory, a model name, or models:/NAME/VERSION.")
    corpus: Optional[str] = option(None, "Text file, one document per line (default: the project's generated corpus).")
    num_texts: int = option(2000, "Generated texts when --corpus is not given.", check=positive)
    max_length: int = option(64, "Tokens per text at most.", check=positive)
    batch_size: int = option(32, "Texts per step (the small batch of the noise-scale estimate).", check=positive)
    big_batch_factor: int = option(4, "The large noise-scale batch is this many times --batch-size.", check=lambda v: None if v >= 2 else f"must be >= 2, got {v}")
    gns_draws: int = option(8, "Batch pairs per noise-scale evaluation: |G|² and tr(Σ) are averaged over them before the ratio.", check=positive)
    max_steps: int = option(600, "Optimisation steps (a multiple of --eval-every).", check=positive)
    eval_every: int = option(50, "Steps between evaluations (losses, noise scale).", check=positive)
    patience: int = option(0, "Stop after this many evaluations without lower val/loss (0: never).", check=non_negative)
    lr: float = option(1e-3, "AdamW learning rate.", check=positive)
    register: bool = option(True, f"Register the fine-tuned model as {REGISTERED_NAME!r} in the Model Registry.")

