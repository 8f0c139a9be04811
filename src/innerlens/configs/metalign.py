"""metalign's options (see innerlens.families.metalign for the experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.config import EpochConfig, non_negative, option, positive, probability
from innerlens.configs.model_shape import ModelShape
from innerlens.search_space import SearchSpec

FAMILY = "metalign"


@dataclass(frozen=True)
class MetalignConfig(ModelShape, EpochConfig):
    family_name = FAMILY
    search = SearchSpec(
        metric="val/acc",
        direction="maximize",
        space=lambda trial: {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-3, 0.3, log=True),
            "n_layers": trial.suggest_int("n_layers", 1, 4),
        },
    )

    backbone: Optional[str] = option(None, "Backbone representations, .npz with one row per object (default: synthetic files written into the run).")
    backbone_key: Optional[str] = option(None, "Array name inside --backbone (default: its only array).")
    reference: Optional[str] = option(None, "Reference embedding, text with one row per object and one column per dimension (SPoSE format).")
    dimension_names: Optional[str] = option(None, "Text file with one readable name per reference dimension.")
    human_data: Optional[str] = option(None, "CSV with dimension,trial,correct,participant (synthetic data comes with simulated learners).")
    synthetic_objects: int = option(1854, "Objects in the synthetic files (as in THINGS).", check=positive)
    synthetic_dimensions: int = option(24, "Reference dimensions in the synthetic files.", check=positive)
    synthetic_features: int = option(64, "Backbone feature width in the synthetic files.", check=positive)
    synthetic_noise: float = option(1.0, "Noise on the synthetic backbone features, relative to their std.", check=non_negative)
    synthetic_latent: int = option(10, "Rank of the object space the synthetic dimensions project from (correlated dimensions, as "
                                       "SPoSE's are; 0: independent dimensions, so held-out ones share nothing with training).",
                                   check=non_negative)
    synthetic_participants: int = option(20, "Simulated participants in the synthetic human data.", check=positive)
    eval_dims: tuple[int, ...] = option((0, 1, 2), "Held-out reference dimensions: never trained on; test episodes and CKA 'heldout' use them.")
    sequence_length: int = option(100, "Objects per episode.", check=positive)
    fixed_label: bool = option(False, "Keep 'at or above the median' as label 1 (default: flipped with p=0.5 per episode).")
    weighted_sampling: bool = option(True, "Sample objects far from the dimension's median more often (clear cases first make in-context learning emerge in minutes; --no-weighted-sampling for uniform draws).")
    episodes_per_epoch: int = option(2048, "Training episodes per epoch.", check=positive)
    eval_episodes: int = option(256, "Fixed validation and test episodes each.", check=positive)
    cka_repeats: int = option(100, "Object half-samples (no duplicates, m-out-of-n rescaled) for CKA intervals.", check=positive)
    cognitive_l2: float = option(1.0, "L2 strength of the logistic-regression learner.", check=positive)

    max_epochs: int = option(80, "Upper bound on training epochs (on the synthetic files validation accuracy peaks near epoch 50).", check=positive)
    patience: int = option(0, "Stop after this many epochs without a better val/acc (0 disables: in-context learning "
                              "appears only after a plateau at chance of ~20 epochs, which patience would mistake for the end).",
                           check=non_negative)
    batch_size: int = option(64, "Episodes per step.", check=positive)
    test_fraction: float = option(0.15, "Fraction of objects for test episodes (reporting only).", check=probability)

    def check(self) -> str | None:
        if not self.eval_dims:
            return "--eval-dims needs at least one held-out dimension, e.g. 0,1,2"
        if len(set(self.eval_dims)) != len(self.eval_dims) or min(self.eval_dims) < 0:
            return f"--eval-dims must be distinct non-negative dimensions, got {','.join(map(str, self.eval_dims))}"
        if (self.backbone is None) != (self.reference is None):
            return "--backbone and --reference go together: give both files, or neither for synthetic data"
        return None
