"""self_modeling's options (see innerlens.families.self_modeling for the experiment)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from innerlens.analysis.llc_settings import PAPER_LLC, LLCSettings
from innerlens.config import EpochConfig, non_negative, option, positive
from innerlens.configs.model_shape import ModelShape
from innerlens.data.catalog import DIGITS_EXAMPLES, FASHION_MNIST_EXAMPLES, fashion_mnist_missing
from innerlens.search_space import SearchSpec

FAMILY = "self_modeling"
PAPER_WIRING = "paper_wiring"  # the transformer's form of the paper's wiring (the MLP's is last_layer)
CONTROL_TARGET = "input"  # input_control's target, keyed in place of a layer by both models and the logged loss
VARIANTS = ("baseline", "first_layer", "middle_layer", "last_layer", "all_layers", "input_control", PAPER_WIRING)
MODELS = ("transformer", "mlp")
TASKS = ("digits", "modular_sum", "modular_sum_seq", "fashion_mnist")
MODEL_TASKS = {"transformer": ("digits", "modular_sum", "modular_sum_seq"), "mlp": ("fashion_mnist", "digits")}
OPTIMIZERS = ("adamw", "sgd")
# Below these, nβ = n/ln n and a 256-example minibatch do not describe a posterior: the LLC is skipped unless asked for.
MIN_LLC_TRAIN, MIN_LLC_EPOCHS = 1000, 10
LLC_ESTIMATORS = ("calibrated", "paper")
SELF_MODEL_LOSSES = ("normalized", "mse")
# Calibrated against a known answer (bench/llc_calibration.py, tests/unit/test_llc.py).
# The named configurations. stable: the defaults, where the baseline generalises on every seed
# (bench/self_modeling_regime_pilot.py); any option may change. grokking: the old defaults, where
# the baseline memorises, collapses and generalises late or never, for the time-to-generalise study.
REGIMES: dict[str, dict[str, object]] = {
    "stable": {},
    "grokking": {"samples": 5000, "weight_decay": 1.0, "batch_size": 256, "lr": 1e-3, "max_epochs": 300,
                 "patience": 0, "self_model_loss": "normalized"},
    # Premakumar et al.'s optimiser and budget (official code, MNIST/run_experiment.py).
    "paper": {"optimizer": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 512,
              "max_epochs": 50, "patience": 0, "self_model_loss": "mse"},
}
DEFAULT_LLC = LLCSettings(epsilon=3e-5, gamma=300.0, num_chains=4, num_draws=500, num_burnin=200, batch_size=256)


@dataclass(frozen=True)
class SelfModelingConfig(ModelShape, EpochConfig):
    family_name = FAMILY
    search = SearchSpec(
        metric="val/acc",
        direction="maximize",
        space=lambda trial: {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-3, 3.0, log=True),
            "self_model_weight": trial.suggest_float("self_model_weight", 0.0, 2.0),
            "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        },
    )
    option_aliases = {"output_dir": ("--base-dir",)}  # the seed script's spelling
    regimes = REGIMES

    regime: str = option(
        "stable",
        "Named configuration. stable: the defaults (every pair, batch 64, weight decay 0.01, 100 epochs), any option may "
        "change; grokking: the memorise-then-generalise setting (5,000 pairs, batch 256, weight decay 1, 300 epochs, "
        "normalized self-model loss), its values fixed; paper: Premakumar et al.'s optimiser and budget (SGD lr 0.005, "
        "Nesterov momentum 0.9, batch 512, no weight decay, 50 epochs, plain MSE), its values fixed.",
        choices=tuple(REGIMES),
    )
    variant: str = option("middle_layer", "Which layer(s) the self-model predicts (transformer blocks, or the MLP's hidden layers); "
                          "input_control: the non-self control, an auxiliary output of the same shape regressing a fixed random "
                          "projection of the input instead; paper_wiring (--model transformer): the paper's wiring, extra unembedding outputs "
                          "predicting the unembedding's own (detached) input, unembed.hook_in (for --model mlp that is last_layer).",
                          choices=VARIANTS)
    model: str = option(
        "transformer",
        "transformer: a TransformerLens classifier with a self-model head on its final residual; mlp: the paper's "
        "ReLU MLP, whose output layer has extra units predicting its own (detached) hidden activations.",
        choices=MODELS,
    )
    hidden: int = option(128, "--model mlp: width of each hidden layer (the paper: 64-512).", check=positive)
    hidden_layers: int = option(1, "--model mlp: hidden layers (the paper: 1; self-modeled: the last one, --variant last_layer).", check=positive)
    relabel_inputs: bool = option(
        False, "--model mlp: the rounding control. Relabel the input features by a fixed permutation (from --seed), in the "
        "data and the first layer's initial weights alike: in exact arithmetic the same training, in floats every "
        "first-layer sum runs in another order, so every arm's rounding changes (another thread count leaves this MLP's "
        "self-modeled runs bit-identical).")
    relabel_classes: bool = option(
        False, "The rounding control for either model (the transformer's under a matched gradient share, which "
        "--stack-seeds cannot stack): relabel the classes by a fixed permutation (from --seed), in the labels and the "
        "output layer's initial rows alike: in exact arithmetic the same training, in floats every sum over the classes "
        "(the loss's normaliser, the gradient into the network) runs in another order.")
    task: str = option(
        "modular_sum",
        "modular_sum: 'a b =' -> (a+b) mod p; modular_sum_seq: 'x1..xk =' -> sum mod p; "
        "digits: scikit-learn's 8x8 handwritten digits (patch tokens for the transformer, 64 pixels for the MLP); "
        "fashion_mnist (--model mlp): Fashion-MNIST's 70,000 images from Debian's dataset-fashion-mnist.",
        choices=TASKS,
    )
    optimizer: str = option("adamw", "adamw, or sgd: SGD with Nesterov momentum (the paper's).", choices=OPTIMIZERS)
    momentum: float = option(0.9, "--optimizer sgd: Nesterov momentum.", check=non_negative)
    lr_decay: float = option(0.0, "Fraction of the budget at its end over which the learning rate falls linearly to zero "
                             "(0: constant; 0.25 settles the weights before they are measured).",
                             check=lambda v: None if 0.0 <= v <= 1.0 else f"must be between 0 and 1, got {v}")
    p: int = option(97, "Modulus (and number of classes) of the modular tasks.", check=lambda v: None if v >= 2 else f"must be >= 2, got {v}")
    samples: Optional[int] = option(None, "Examples drawn (empty: every one of modular_sum's p^2 pairs or of the 1,797 digits; 5,000 for modular_sum_seq).", check=positive)
    seq_len: int = option(4, "Operands per example for modular_sum_seq.", check=positive)
    weight_decay: float = option(0.01, "AdamW weight decay (kept weak: strong decay sets the weight scale itself).", check=non_negative)
    max_epochs: int = option(100, "Training epochs (a fixed budget with --patience 0).", check=positive)
    batch_size: int = option(64, "Minibatch size (64: the regime where the baseline generalises on every pilot seed, bench/self_modeling_regime_pilot.py).", check=positive)
    patience: int = option(0, "Stop after this many epochs without a better val/acc (0: fixed budget, every run measured at the same point).", check=non_negative)
    self_model_weight: float = option(
        0.01, "Weight of the self-model loss added to the task loss (0.01: the transformer still learns; the paper's MLP "
        "used 1-100, e.g. --model mlp --regime paper --self-model-weight 10).", check=non_negative)
    self_model_grad_share: Optional[float] = option(
        None, "Match the auxiliary loss's strength by its share of the gradient norm instead of a fixed weight, e.g. 0.1: "
        "‖w g_aux‖ / (‖g_task‖ + ‖w g_aux‖), matched outright on the first epoch's first minibatch (replacing "
        "--self-model-weight), then re-matched halfway on each later epoch's.",
        check=lambda v: None if 0.0 < v < 1.0 else f"must be strictly between 0 and 1, got {v}")
    self_model_max_weight: Optional[float] = option(
        None, "With --self-model-grad-share: the largest weight a match may set (empty: no cap), e.g. 10, the paper's "
        "headline AW. A self-model that has learnt its target almost exactly has a vanishing gradient, so holding its "
        "share takes an ever larger weight: at lr 0.05 the 3-layer MLP's last-layer weight ran to 166 and diverged.",
        check=positive)
    detach_target: bool = option(True, "Detach the activations the self-model predicts (the paper's choice).")
    self_model_loss: str = option(
        "mse",
        "mse: plain MSE as in the paper; normalized: MSE / mean(target^2), an ablation that shrinking activations cannot game.",
        choices=SELF_MODEL_LOSSES,
    )
    llc_every: int = option(0, "Also estimate the LLC every N epochs during training (0: only at the end and at the best checkpoint); each costs one calibrated estimate (--llc-chains x (--llc-burnin + --llc-draws) SGLD steps: about 70 s, some 60 training epochs, for the default transformer on a CPU core).", check=non_negative)
    llc_epsilon: float = option(DEFAULT_LLC.epsilon, "SGLD step size ε for the LLC (calibrated: bench/llc_calibration.py).", check=positive)
    llc_gamma: float = option(DEFAULT_LLC.gamma, "SGLD localisation γ for the LLC.", check=non_negative)
    llc_nbeta: Optional[float] = option(None, "Inverse temperature nβ (empty: n/log(n) for n training examples).", check=positive)
    llc_chains: int = option(DEFAULT_LLC.num_chains, "SGLD chains per LLC estimate.", check=positive)
    llc_draws: int = option(DEFAULT_LLC.num_draws, "SGLD draws per chain.", check=positive)
    llc_burnin: int = option(DEFAULT_LLC.num_burnin, "SGLD steps discarded before the draws (with the draws, past the localisation time 2/(εγ)).", check=non_negative)
    llc_sampler: str = option(DEFAULT_LLC.sampler, "SGLD sampler: devinterp (chain after chain) or vectorised (all chains as one batched model; for GPUs).", choices=("devinterp", "vectorised"))
    llc_estimators: tuple[str, ...] = option(
        LLC_ESTIMATORS,
        "End-of-run LLC estimators. calibrated: the --llc-* settings, nβ = n/ln n (4 x 700 SGLD steps: about 70 s for "
        "the default transformer on a CPU core, bench/llc_cost.py); paper: Premakumar et al.'s, nβ = batch/ln(batch), ε 1e-4, "
        "γ 100, 4 x 1,000 draws at minibatch 512 (about 30 s for the paper's MLP), logged as llc/final_mean_paper.", choices=LLC_ESTIMATORS)
    settle_window: int = option(10, "Epochs the training loss must have held still (or memorised) for a run to count as settled.", check=positive)
    measure_llc: Optional[bool] = option(
        None, "Estimate the LLC at the end of training (and at the best checkpoint). Empty: yes, unless the run is too "
        f"small for it to mean anything (under {MIN_LLC_TRAIN} training examples or {MIN_LLC_EPOCHS} epochs: skipped with "
        "one line). Costs each estimator's SGLD steps once per measured point; weight std is always measured.")
    llc_after_generalisation: int = option(
        0, "Also measure the run (weight spread, every --llc-estimators LLC) this many epochs after validation accuracy first "
           "reaches 0.95 (0: off): a point at the same distance from each run's own generalisation, whatever its budget "
           "(llc/after_generalisation_mean[_paper], weights/std_after_generalisation).", check=non_negative)
    end_after_generalisation: int = option(
        0, "End each run this many epochs after validation accuracy first reaches 0.95 (0: off; --max-epochs stays the cap), "
           "--lr-decay's fall to zero taking the last fraction of these epochs: every run that generalises trains as long "
           "after it and settles the same way, however late it generalised (at a fixed budget the late ones end unsettled). "
           "A run that never generalises ends at --max-epochs.", check=non_negative)
    llc_at_best: bool = option(True, "Also estimate the LLC at the best checkpoint (a secondary metric; the final LLC is primary). Off halves a study's LLC cost.")
    llc_gamma_sensitivity: bool = option(False, "Also estimate the final LLC at γ/10 and 10γ (logged as llc/final_mean_gamma_<γ>): two more calibrated estimates, tripling that estimator's cost.")
    output_dir: Optional[str] = option(None, "Also keep a local copy of the run's figures, checkpoints and tables here (the seed's --base_dir).")
    force_overwrite: bool = option(False, "Replace an existing --output-dir (only one an earlier innerlens copy wrote) instead of archiving it with a timestamp.")

    def check(self) -> str | None:
        if self.task not in MODEL_TASKS[self.model]:
            return f"--task {self.task} does not fit --model {self.model}; choose from {', '.join(MODEL_TASKS[self.model])}"
        depth, flag = (self.n_layers, "--n-layers") if self.model == "transformer" else (self.hidden_layers, "--hidden-layers")
        if self.variant in ("middle_layer", "all_layers") and depth < 3:
            return f"--variant {self.variant} needs {flag} >= 3 so that middle and last differ, got {depth}"
        if self.variant == PAPER_WIRING and self.model == "mlp":
            return "--variant paper_wiring is the transformer's form of the paper's wiring; for --model mlp it is last_layer"
        if self.self_model_max_weight is not None and self.self_model_grad_share is None:
            return "--self-model-max-weight caps the matched weight: give --self-model-grad-share too"
        if 0 < self.end_after_generalisation < self.llc_after_generalisation:
            return (f"--llc-after-generalisation {self.llc_after_generalisation} would measure after the run ends "
                    f"(--end-after-generalisation {self.end_after_generalisation})")
        if self.relabel_inputs and self.model != "mlp":
            return "--relabel-inputs is the MLP's rounding control; the transformer's is --stack-seeds or --relabel-classes"
        if self.task == "fashion_mnist" and (missing := fashion_mnist_missing()):
            return missing
        available = {"digits": DIGITS_EXAMPLES, "modular_sum": self.p**2, "modular_sum_seq": self.p**self.seq_len,
                     "fashion_mnist": FASHION_MNIST_EXAMPLES}[self.task]
        if self.n_samples > available:
            where = "" if self.task == "digits" else f" with p={self.p}"
            return f"--samples {self.n_samples} exceeds the {available} distinct examples of {self.task}{where}"
        n_val, n_test = int(self.n_samples * self.val_fraction), int(self.n_samples * self.test_fraction)
        if min(n_val, n_test) < 1:
            return f"--samples {self.samples} leaves an empty val or test split; use more samples"
        return None

    @property
    def n_samples(self) -> int:
        if self.samples is not None:
            return self.samples
        return {"digits": DIGITS_EXAMPLES, "modular_sum": self.p**2, "fashion_mnist": FASHION_MNIST_EXAMPLES}.get(self.task, 5000)

    @property
    def train_size(self) -> int:
        """Training examples (what nβ = n/log n counts), as :func:`split_indices` cuts them."""
        n = self.n_samples
        return n - int(n * self.val_fraction) - int(n * self.test_fraction)

    @property
    def llc_skipped(self) -> str | None:
        """Why the end-of-run LLC is not measured (None: it is)."""
        if self.measure_llc is False:
            return "--measure-llc false"
        if self.measure_llc is None and (self.train_size < MIN_LLC_TRAIN or self.max_epochs < MIN_LLC_EPOCHS):
            return (f"LLC skipped: {self.train_size} training examples and {self.max_epochs} epochs are under the "
                    f"{MIN_LLC_TRAIN} examples / {MIN_LLC_EPOCHS} epochs where it means something (--measure-llc true forces it)")
        return None

    def llc_estimator(self, name: str) -> LLCSettings:
        """The named estimator's settings: ``paper`` fixed, ``calibrated`` from the --llc-* options."""
        return PAPER_LLC if name == "paper" else self.llc_settings

    @property
    def llc_settings(self) -> LLCSettings:
        return LLCSettings(
            epsilon=self.llc_epsilon,
            gamma=self.llc_gamma,
            nbeta=self.llc_nbeta,
            num_chains=self.llc_chains,
            num_draws=self.llc_draws,
            num_burnin=self.llc_burnin,
            batch_size=DEFAULT_LLC.batch_size,
            sampler=self.llc_sampler,
        )
