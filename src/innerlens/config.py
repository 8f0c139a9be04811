"""Config dataclasses: the single source of truth for CLI options, MLflow params and MLproject.

A family declares a frozen dataclass whose fields carry their help text and checks in
``field(metadata=...)`` (see :func:`option`). From it we derive the click options, the
MLflow params and the MLproject parameters, so the three can never drift apart.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Optional

from innerlens.errors import ConfigError

# Fields that steer how a run is executed rather than what it computes; never logged as params
# (a resumed run keeps the params it was started with).
RUN_CONTROL_FIELDS = ("resume", "force_resume")


# Fields a resumed run may change: how long and where it trains, not what it computes.
RESUMABLE_FIELDS = ("resume", "force_resume", "max_epochs", "max_steps", "device", "checkpoint_interval")

# How an unset optional value is written on the command line and in params ("" works too).
NONE_SPELLINGS = ("", "none")


Check = Callable[[Any], Optional[str]]


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    check: Check | None = None,
) -> Any:
    """A config field with its help text, optional choices and a value check.

    ``check`` returns an error message (what is wrong and what to do) or None.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "check": check})


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


SEED_LIMIT = 2**32  # NumPy's generators take seeds in [0, 2**32); torch's would wrap larger ones silently


def valid_seed(seed: int) -> str | None:
    return None if 0 <= seed < SEED_LIMIT else f"a seed must be between 0 and {SEED_LIMIT - 1}, got {seed}"


def distinct_seeds(seeds: tuple[int, ...]) -> str | None:
    if not seeds:
        return "give at least one seed, e.g. 0,1,2"
    if (bad := next((message for seed in seeds if (message := valid_seed(seed))), None)):
        return bad
    return None if len(set(seeds)) == len(seeds) else f"seeds must be distinct, got {','.join(map(str, seeds))}"


def probability(value: float | None) -> str | None:
    if value is None or 0.0 <= value <= 1.0:
        return None
    return f"must be between 0 and 1, got {value}"


@dataclass(frozen=True)
class FieldSpec:
    """What the CLI and MLproject need to know about one config field."""

    name: str
    base_type: type  # int, float, str or bool
    is_tuple: bool
    optional: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None
    aliases: tuple[str, ...] = ()  # other spellings of the flag (the seed scripts'), e.g. --token-pos

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: Any) -> Any:
        """Turn a CLI/MLproject string (or an already typed value) into the field's type."""
        if raw is None or (self.optional and isinstance(raw, str) and raw.strip().lower() in NONE_SPELLINGS):
            return None
        if self.is_tuple:
            if isinstance(raw, str) and raw.strip().lower() in NONE_SPELLINGS:
                return ()
            items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
            return tuple(self._parse_scalar(item) for item in items)
        return self._parse_scalar(raw)

    def _parse_scalar(self, raw: Any) -> Any:
        if isinstance(raw, self.base_type) and not (self.base_type is int and isinstance(raw, bool)):
            return raw
        text = str(raw).strip()
        try:
            if self.base_type is bool:
                lowered = text.lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError
            return self.base_type(text)
        except ValueError:
            kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[self.base_type]
            raise ConfigError(f"{self.cli_flag}: expected {kind}, got {text!r}") from None

    def render(self, value: Any) -> str:
        """The string form used for MLflow params and MLproject defaults."""
        if value is None:
            return "none"
        if self.is_tuple:
            return ",".join(str(v) for v in value) or "none"  # mlflow run cannot pass an empty value
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def _unwrap(annotation: Any) -> tuple[type, bool, bool]:
    """Return (base type, is_tuple, optional) for the annotations configs may use."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, f"unsupported union {annotation}"
        optional, annotation = True, args[0]
        origin = typing.get_origin(annotation)
    if origin is tuple:
        return typing.get_args(annotation)[0], True, optional
    assert annotation in (int, float, str, bool), f"unsupported config type {annotation}"
    return annotation, False, optional


@dataclass(frozen=True)
class Config:
    """Base of every family's config: validation on construction, derived params and specs."""

    family_name: ClassVar[str] = ""  # the innerlens.family tag of its runs
    # What ``tune`` may vary and the validation metric it optimises (an innerlens.search_space.SearchSpec,
    # which imports this module); a family with one is tunable.
    search: ClassVar[Any] = None
    # Fields that exist for the program but are not user options of this entry point.
    hidden_fields: ClassVar[tuple[str, ...]] = ()
    # Options that may carry a secret (a URL with a password): never an MLproject parameter, whose
    # value would sit in the launched command's argv (`ps`) and in the run's params; set by environment.
    environment_only_fields: ClassVar[tuple[str, ...]] = ()
    # Other spellings of a flag: field -> ("--old-name", ...), shown in --help beside the flag.
    option_aliases: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Old flags whose values map onto an option: "--old" -> (field, {given value: option value}).
    # A bare switch has the given value ""; a value mapped to None drops the flag (the default holds).
    legacy_flags: ClassVar[dict[str, tuple[str, dict[str, str | None]]]] = {}
    # Named configurations of the ``regime`` field: name -> the field values it fixes. The CLI fills
    # them in as defaults, and a config whose values contradict its regime is refused.
    regimes: ClassVar[dict[str, dict[str, Any]]] = {}
    # Bases whose own ``check`` does not apply here: a study checks each of its single runs in full
    # (as it builds them) instead of the hidden single-run fields it inherits.
    unchecked_bases: ClassVar[tuple[type, ...]] = ()

    def __post_init__(self) -> None:
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.choices is not None and value is not None:
                values = value if spec.is_tuple else (value,)
                for item in values:
                    if item not in spec.choices:
                        raise ConfigError(
                            f"{spec.cli_flag}: unknown value {item!r}; choose from {', '.join(spec.choices)}"
                        )
            if spec.base_type is float and value is not None:
                values = value if spec.is_tuple else (value,)
                if not all(math.isfinite(item) for item in values):  # inf/nan would train silently into nan
                    raise ConfigError(f"{spec.cli_flag}: expected a finite number, got {value}")
            check = dataclasses.fields(self)[self._index(spec.name)].metadata.get("check")
            if check is not None and value is not None:
                message = check(value)
                if message:
                    raise ConfigError(f"{spec.cli_flag}: {message}")
        message = self.regime_check() or self.checks()
        if message:
            raise ConfigError(message)

    def checks(self) -> str | None:
        """Every class's own :meth:`check`, base classes first: each covers its own fields and none
        calls ``super()``, so a mixin's check (a model's shape, an executor's options) runs once."""
        for cls in reversed(type(self).__mro__):
            own = cls.__dict__.get("check")
            if own is not None and cls not in self.unchecked_bases and (message := own(self)):
                return message
        return None

    def regime_check(self) -> str | None:
        """A named regime holds exactly its own values, so its name in the params never misleads."""
        fixed = self.regimes.get(getattr(self, "regime", ""), {})
        wrong = [name for name, value in fixed.items() if getattr(self, name) != value]
        if not wrong:
            return None
        spelled = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in fixed.items())
        given = ", ".join(f"--{name.replace('_', '-')} {getattr(self, name)}" for name in wrong)
        return f"--regime {self.regime} means {spelled}; got {given} (use --regime stable to change them)"

    def check(self) -> str | None:
        """This class's cross-field checks (see :meth:`checks`); a one-line message or None."""
        return None

    @classmethod
    def _index(cls, name: str) -> int:
        return [f.name for f in dataclasses.fields(cls)].index(name)

    @classmethod
    def specs(cls, include_hidden: bool = True) -> Iterator[FieldSpec]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not include_hidden and f.name in cls.hidden_fields:
                continue
            base, is_tuple, optional = _unwrap(hints[f.name])
            yield FieldSpec(
                name=f.name,
                base_type=base,
                is_tuple=is_tuple,
                optional=optional,
                default=f.default,
                help=f.metadata.get("help", ""),
                choices=f.metadata.get("choices"),
                aliases=cls.option_aliases.get(f.name, ()),
            )

    @classmethod
    def from_strings(cls, values: dict[str, Any]) -> "Config":
        """Build from raw CLI/MLproject values (strings or typed), validating everything."""
        specs = {s.name: s for s in cls.specs()}
        unknown = set(values) - set(specs)
        assert not unknown, f"unknown config keys {unknown}"
        return cls(**{name: specs[name].parse(raw) for name, raw in values.items()})

    def cli_values(self) -> dict[str, str]:
        """Every user-visible field except run controls, rendered as the CLI accepts it."""
        return {
            s.name: s.render(getattr(self, s.name))
            for s in self.specs(include_hidden=False)
            if s.name not in RUN_CONTROL_FIELDS
        }

    def to_params(self) -> dict[str, str]:
        """MLflow params: :meth:`cli_values` (tracking masks passwords in URLs as it logs them)."""
        return dict(self.cli_values())

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The config as ``config.json`` holds it (tracking masks passwords in URLs as it logs it)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def resumed_from(self, stored: dict[str, Any], given: set[str]) -> "Config":
        """This config with the stored run's values, apart from :data:`RESUMABLE_FIELDS`.

        ``given`` names the options the user typed; one that contradicts the stored run (the seed
        picks the split, so a new seed would train on former test examples) is refused in one line.
        """
        specs = {spec.name: spec for spec in self.specs()}
        adopted = {name: specs[name].parse(value) for name, value in stored.items()
                   if name in specs and name not in RESUMABLE_FIELDS}
        differing = sorted(name for name, value in adopted.items() if name in given and getattr(self, name) != value)
        if differing:
            flags = ", ".join(f"{specs[n].cli_flag} (run has {specs[n].render(adopted[n])})" for n in differing)
            raise ConfigError(f"--resume {self.resume}: a resumed run keeps its configuration; these options differ: {flags}")
        return self.replace(**adopted)


def open_fraction(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else f"must be strictly between 0 and 1, got {value}"


@dataclass(frozen=True)
class TrainConfig(Config):
    """Options every trained family shares: seeding, device, splits, optimiser and selection."""

    seed: int = option(0, "Random seed for data, initialisation and shuffling.", check=valid_seed)
    device: str = option("auto", "Where to train: auto picks CUDA, then MPS, then CPU.", choices=("auto", "cpu", "cuda", "mps"))
    train_fraction: float = option(0.7, "Fraction of examples used for training.", check=open_fraction)
    val_fraction: float = option(0.15, "Fraction used for validation (early stopping, checkpoint selection).", check=open_fraction)
    test_fraction: float = option(0.15, "Fraction held out for reporting only.", check=open_fraction)
    lr: float = option(1e-3, "AdamW learning rate.", check=positive)
    weight_decay: float = option(0.01, "AdamW weight decay.", check=non_negative)
    target_accuracy: Optional[float] = option(None, "Stop once this accuracy is reached on --target-split.", check=probability)
    target_split: str = option("val", "Split the target accuracy is checked on (test only if you mean it).", choices=("val", "test"))
    checkpoint_interval: float = option(
        30.0, "Seconds between checkpoint writes (0: every evaluation); the final one is always written.", check=non_negative
    )
    resume: Optional[str] = option(None, "Run id of an interrupted run to continue from its last checkpoint.")
    force_resume: bool = option(False, "With --resume: continue a run the store still shows RUNNING (its process "
                                       "died unrecorded: SIGKILL, a lost node).")

    def check(self) -> str | None:
        if self.force_resume and not self.resume:
            return "--force-resume needs --resume RUN_ID"
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            return (
                f"--train-fraction/--val-fraction/--test-fraction must sum to 1, got "
                f"{self.train_fraction}+{self.val_fraction}+{self.test_fraction}={total:g}"
            )
        return None


@dataclass(frozen=True)
class EpochConfig(TrainConfig):
    """Families that train in minibatch epochs (step-based families count steps instead)."""

    max_epochs: int = option(100, "Upper bound on training epochs.", check=positive)
    patience: int = option(30, "Stop after this many epochs without a better val/acc (0 disables).", check=non_negative)
    batch_size: int = option(256, "Minibatch size.", check=positive)


@dataclass(frozen=True)
class StepConfig(TrainConfig):
    """Families that train for a number of optimisation steps and evaluate every ``eval_every`` of
    them (one "round" of the engine); a family declares its own defaults for both."""

    max_steps: int = option(1000, "Optimisation steps (a multiple of --eval-every).", check=positive)
    eval_every: int = option(100, "Steps between evaluations.", check=positive)

    def check(self) -> str | None:
        if self.max_steps % self.eval_every:
            return f"--max-steps {self.max_steps} must be a multiple of --eval-every {self.eval_every}"
        return None

    @property
    def rounds(self) -> int:
        """Evaluations in the whole budget: the engine's round count."""
        return self.max_steps // self.eval_every
