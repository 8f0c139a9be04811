"""Every command: the families (:mod:`innerlens.registry`) and the drivers that run many of them.

The CLI and the MLproject file are rendered from :data:`ENTRY_POINTS`, in this order.
"""
from __future__ import annotations

from types import ModuleType

from innerlens.configs.compare import CompareConfig
from innerlens.configs.grokking_sweep import GrokkingSweepConfig
from innerlens.configs.self_modeling_comparison import SelfModelingComparisonConfig
from innerlens.configs.tune import TuneConfig
from innerlens.registry import EntryPoint, family


def _self_modeling_comparison() -> ModuleType:
    from innerlens.drivers import self_modeling_comparison

    return self_modeling_comparison


def _grokking_sweep() -> ModuleType:
    from innerlens.drivers import grokking_sweep

    return grokking_sweep


def _tune() -> ModuleType:
    from innerlens import tune

    return tune


def _compare() -> ModuleType:
    from innerlens import compare

    return compare


DRIVERS = {entry.name: entry for entry in (
    EntryPoint("self_modeling_comparison", SelfModelingComparisonConfig,
               "Train every self-modeling variant (x seeds) under one parent run and draw the comparison.",
               _self_modeling_comparison, function="compare", is_family=False),
    EntryPoint("grokking_sweep", GrokkingSweepConfig,
               "Sweep one grokking hyperparameter (or only seeds): nested runs, time-to-generalize and seed bands.",
               _grokking_sweep, function="sweep", is_family=False),
    EntryPoint("tune", TuneConfig,
               "Optuna search over a family's hyperparameters on its validation metric; trials nested under the study's run.",
               _tune, is_family=False),
    EntryPoint("compare", CompareConfig,
               "Query the tracking server and compare runs by group: curves with bands, statistics, one HTML report.",
               _compare, is_family=False),
)}

ORDER = ("self_modeling", "self_modeling_comparison", "grokking", "grokking_sweep", "introspection", "generator",
         "selector", "metalign", "tune", "compare")
ENTRY_POINTS: tuple[EntryPoint, ...] = tuple(DRIVERS[name] if name in DRIVERS else family(name) for name in ORDER)


def entry_points() -> list[EntryPoint]:
    return list(ENTRY_POINTS)
