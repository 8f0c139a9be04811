"""introspection's options (see innerlens.families.introspection for the experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from innerlens.config import EpochConfig, non_negative, option, positive
from innerlens.models.hooks import LAYER_TYPES
from innerlens.search_space import SearchSpec

FAMILY = "introspection"
UNFREEZE = ("none", "all", "after_target", "from_layer", "selective")
COMPONENTS = ("attention", "mlp", "embeddings")


def _position_check(value: str) -> str | None:
    return None if value == "last" or (value.isdigit()) else f"must be 'last' or a token index >= 0, got {value!r}"


def introspection_space(trial: Any) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "head_lr": trial.suggest_float("head_lr", 1e-3, 3e-2, log=True),
    }


@dataclass(frozen=True)
class IntrospectionConfig(EpochConfig):
    family_name = FAMILY
    # Regression runs select on val/r2, classification on val/acc: both "higher is better".
    search = SearchSpec(metric=lambda config: config.monitor, direction="maximize", space=introspection_space)
    # The seed script's spellings (its usage section): accepted as written.
    option_aliases = {"token_position": ("--token-pos",), "max_epochs": ("--epochs",), "lr": ("--learning-rate",),
                      "val_fraction": ("--val-split",), "test_fraction": ("--test-split",)}
    legacy_flags = {
        "--regression": ("task", {"true": "regression", "false": "classification"}),
        "--early-stopping": ("patience", {"": None}),  # on by default (--patience 8)
        "--no-early-stopping": ("patience", {"": "0"}),
        "--device": ("device", {"": "auto"}),  # the seed's empty --device meant "pick one"
    }

    model: str = option("tiny", "tiny (a small GPT-2-style language model trained here on the generated corpus, offline), tiny-random (the same, untrained: the control), a local Hugging Face checkpoint directory, or a model name.")
    texts: Optional[str] = option(None, "File with one text per line (default: generated texts).")
    num_samples: int = option(1400, "Generated texts when --texts is not given (1400: 210 validation and 210 test texts).", check=positive)
    max_length: int = option(64, "Tokens per text at most (longer texts are truncated).", check=positive)
    layer: Optional[int] = option(None, "Layer of the target neuron (default: the scanner's choice).")
    neuron: Optional[int] = option(None, "Target neuron within the layer (default: the scanner's choice).")
    layer_type: str = option("mlp_out", "mlp_out: blocks.{l}.mlp.hook_post (d_mlp neurons); resid_post: blocks.{l}.hook_resid_post (d_model).", choices=tuple(LAYER_TYPES))
    token_position: str = option("last", "Token read: last (last non-padding token of each text) or an index.", check=_position_check)
    feature_layer: Optional[int] = option(None, "Residual stream layer the head reads (blocks.F.hook_resid_post); default: the one just below the target's layer (-1: the embeddings), so the head predicts the neuron instead of reading it.")
    allow_readout: bool = option(False, "Allow --feature-layer at or above the target's layer: the features then hold the target's own write, a readout rather than a prediction.")
    task: str = option("regression", "regression (MSE on normalised targets) or classification (quantile bins).", choices=("regression", "classification"))
    num_bins: int = option(4, "Quantile bins for classification.", check=lambda v: None if v >= 2 else f"must be >= 2, got {v}")
    unfreeze: str = option("none", "Which model weights train with the head.", choices=UNFREEZE)
    unfreeze_from: Optional[int] = option(None, "from_layer: first block that trains.")
    unfreeze_components: tuple[str, ...] = option(("attention", "mlp"), "selective: components that train in every block.", choices=COMPONENTS)
    targets: str = option("fixed", "fixed: labels from the original model; live: recomputed from the current model each step, detached; live_gradient: recomputed, and the loss's gradient flows into the target's own computation.", choices=("fixed", "live", "live_gradient"))
    regression_loss: str = option("normalized", "normalized: MSE divided by the batch's target variance (scale-invariant: silencing the neuron is not rewarded); mse: plain MSE on standardised targets.", choices=("normalized", "mse"))
    variance_floor: float = option(0.05, "R² is reported only while the target's variance stays above this share of its original variance; below it a collapse flag is logged.", check=positive)
    cross_model: Optional[str] = option(None, "Another model whose frozen features predict this model's neuron (cross-prediction probe).")
    track_gradients: bool = option(False, "Record per-layer, per-component gradient norms.")
    gradient_interval: int = option(10, "Steps between gradient-norm records.", check=positive)
    track_activations: bool = option(False, "Record target-neuron and layer distributions (JSON + drift plot).")
    activation_interval: int = option(1, "Epochs between activation records.", check=positive)
    output_dir: Optional[str] = option(None, "Also keep a local copy of the run's artifacts here.")
    force_overwrite: bool = option(False, "Replace an existing --output-dir (only one an earlier innerlens copy wrote) instead of archiving it with a timestamp.")

    max_epochs: int = option(30, "Upper bound on training epochs.", check=positive)
    patience: int = option(8, "Stop after this many epochs without a better validation score (0 disables).", check=non_negative)
    batch_size: int = option(16, "Texts per step.", check=positive)
    lr: float = option(1e-4, "AdamW learning rate of the language model's unfrozen weights.", check=positive)
    head_lr: float = option(1e-2, "AdamW learning rate of the introspection head.", check=positive)

    def check(self) -> str | None:
        if self.unfreeze == "from_layer" and self.unfreeze_from is None:
            return "--unfreeze from_layer needs --unfreeze-from LAYER"
        if self.unfreeze == "selective" and not self.unfreeze_components:
            return "--unfreeze selective needs --unfreeze-components (attention, mlp, embeddings)"
        if self.neuron is not None and self.layer is None:
            return "--neuron needs --layer (or give neither and let the scanner choose)"
        if self.targets == "live_gradient" and self.unfreeze == "none":
            return "--targets live_gradient needs trainable model weights (--unfreeze all, after_target, from_layer or selective)"
        if self.task == "regression" and self.target_accuracy is not None:
            return "--target-accuracy applies to classification; regression selects on val/r2"
        return None

    @property
    def position(self) -> int | None:
        return None if self.token_position == "last" else int(self.token_position)

    @property
    def monitor(self) -> str:
        return "val/r2_floored" if self.task == "regression" else "val/acc"
