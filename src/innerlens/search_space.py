"""Search spaces: what ``tune`` may vary in a family, and which validation metric it optimises.

A family declares a :class:`SearchSpec` next to its Config. Its ``space`` is a plain function
of an Optuna trial (only ``suggest_*`` is called, so this module needs no optuna import);
``--space FILE`` replaces it with a YAML mapping of the same parameters, e.g.::

    lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    batch_size: {type: categorical, choices: [64, 128, 256]}
    n_layers: {type: int, low: 1, high: 4}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from innerlens.config import Config
from innerlens.errors import ConfigError
from innerlens.inputs import read_input_text

Space = Callable[[Any], dict[str, Any]]
KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class SearchSpec:
    metric: str | Callable[[Config], str]  # a validation metric (or one per config): never another split
    direction: str  # "maximize" or "minimize"
    space: Space

    def __post_init__(self) -> None:
        assert self.direction in ("maximize", "minimize"), self.direction

    def monitor(self, config: Config) -> str:
        metric = self.metric(config) if callable(self.metric) else self.metric
        assert metric.startswith("val/"), "objectives read validation metrics only"
        return metric


def _suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))
    if kind == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)))
    return trial.suggest_categorical(name, list(spec["choices"]))


def space_from_yaml(path: str | Path, config_class: type[Config]) -> Space:
    """A space function from a YAML file, every entry checked against the family's Config now."""
    import yaml

    text = read_input_text(path, "--space")
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--space {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"--space {path}: expected a mapping of parameter -> {{type, low, high | choices}}")
    fields = {spec.name for spec in config_class.specs()}
    for name, spec in entries.items():
        if name not in fields:
            raise ConfigError(f"--space {path}: {name!r} is not an option of {config_class.family_name}")
        if name in ("target_split", "seed"):  # test metrics never steer; a study is not a search over seeds
            raise ConfigError(f"--space {path}: {name} cannot be searched")
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise ConfigError(f"--space {path}: {name}: 'type' must be one of {', '.join(KINDS)}")
        needed = ("choices",) if spec["type"] == "categorical" else ("low", "high")
        missing = [key for key in needed if key not in spec]
        if missing:
            raise ConfigError(f"--space {path}: {name}: missing {', '.join(missing)}")
        if spec["type"] != "categorical":
            bounds = [spec["low"], spec["high"]]
            if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
                raise ConfigError(f"--space {path}: {name}: low and high must be numbers, got {bounds[0]!r} and {bounds[1]!r}")
            if spec["type"] == "int" and not all(float(b).is_integer() for b in bounds):
                raise ConfigError(f"--space {path}: {name}: an int range needs whole-number bounds, got {bounds}")
            if not bounds[0] < bounds[1]:
                raise ConfigError(f"--space {path}: {name}: low must be below high")
            if spec.get("log") and bounds[0] <= 0:
                raise ConfigError(f"--space {path}: {name}: a log range needs low > 0")

    def space(trial: Any) -> dict[str, Any]:
        return {name: _suggest(trial, name, spec) for name, spec in entries.items()}

    return space
