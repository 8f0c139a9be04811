"""selector's options (see innerlens.families.selector for the experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.config import EpochConfig, non_negative, option, positive, probability
from innerlens.search_space import SearchSpec

FAMILY = "selector"
REGISTERED_NAME = "innerlens-selector"


@dataclass(frozen=True)
class SelectorConfig(EpochConfig):
    family_name = FAMILY
    search = SearchSpec(
        metric="val/auc",
        direction="maximize",
        space=lambda trial: {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "mlp_ratio": trial.suggest_int("mlp_ratio", 1, 4),
        },
    )

    generator: str = option("tiny", "Frozen generator: tiny (trained here on the generated corpus), tiny-random (untrained control), models:/innerlens-generator/VERSION|latest, a checkpoint directory or a model name.")
    data: Optional[str] = option(None, "CSV with text,label columns (default: the generated name-order corpus).")
    num_texts: int = option(1000, "Generated labelled texts when --data is not given.", check=positive)
    max_length: int = option(64, "Tokens per text at most.", check=positive)
    feature_layers: tuple[int, ...] = option((), "Generator layers the head reads (default: about 1/6 and 1/2 of its depth).")
    heads: int = option(40, "Attention heads per block (the nearest count dividing d_model is used).", check=positive)
    mlp_ratio: int = option(3, "Hidden width of the residual MLP, as a multiple of its input.", check=positive)
    dropout: float = option(0.1, "Dropout in the residual MLP.", check=probability)
    calibrate: bool = option(True, "Platt-scale the test probabilities on validation logits.")
    examples: Optional[str] = option(None, "File of texts (one per line) to draw attention heatmaps for (default: the first --num-examples test texts).")
    num_examples: int = option(3, "Test texts drawn as heatmaps when --examples is not given.", check=non_negative)
    register: bool = option(True, f"Register the trained head as {REGISTERED_NAME!r} in the Model Registry.")

    max_epochs: int = option(40, "Upper bound on training epochs.", check=positive)
    patience: int = option(8, "Stop after this many epochs without a better val/auc (0 disables).", check=non_negative)
    batch_size: int = option(32, "Texts per step.", check=positive)
