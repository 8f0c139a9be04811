"""Every command: the families (:mod:`innerlens.registry`) and the drivers that run many of them.

The CLI and the MLproject file are rendered from :data:`ENTRY_POINTS`, in this order.
"""
from __future__ import annotations

from types import ModuleType

from innerlens.configs.compare import CompareConfig
from innerlens.configs.grokking_sweep import GrokkingSweepConfig
from innerlens.configs.self_modeling_comparison import SelfModelingComparisonConfig
from innerlens.configs.tune import TuneConfig
from innerlens.registry import FAMILIES, EntryPoint


def _self_modeling_comparison() -> ModuleType:
    from innerlens.drivers import self_modeling_comparison

    return self_modeling_comparison


def _grokking_sweep() -> ModuleType:
    from innerlens.drivers import grokking_sweep

    return grokking_sweep


def _tune() -> ModuleType:
    from innerlens.drivers import tune

    return tune


def _compare() -> ModuleType:
    from innerlens.drivers import compare

    return compare


DRIVERS = {entry.name: entry for entry in (
    EntryPoint("self_modeling_comparison", SelfModelingComparisonConfig,
               "Train every self-modeling variant (x seeds) under one parent run and draw the comparison.",
               _self_modeling_comparison, function="run_comparison", is_family=False, follows="self_modeling"),
    EntryPoint("grokking_sweep", GrokkingSweepConfig,
               "Sweep one grokking hyperparameter (or only seeds): nested runs, time-to-generalize and seed bands.",
               _grokking_sweep, function="sweep", is_family=False, follows="grokking"),
    EntryPoint("tune", TuneConfig,
               "Optuna search over a family's hyperparameters on its validation metric; trials nested under the study's run.",
               _tune, is_family=False),
    EntryPoint("compare", CompareConfig,
               "Query the tracking server and compare runs by group: curves with bands, statistics, one HTML report.",
               _compare, is_family=False),
)}

# The CLI's and the MLproject's order, from the declarations: each family, then the drivers that follow
# it, then the drivers of every family (tune, compare). A family is declared once, in registry.FAMILIES.
ENTRY_POINTS: tuple[EntryPoint, ...] = (
    *(entry for family in FAMILIES for entry in (family, *(d for d in DRIVERS.values() if d.follows == family.name))),
    *(driver for driver in DRIVERS.values() if driver.follows is None),
)

ENTRYPOINT_SCRIPT = '''"""MLproject entry point `{name}`: thin, all logic lives in innerlens."""
import sys

from innerlens.cli import main

if __name__ == "__main__":  # worker processes re-import this module: they must not re-run the command
    main(["{command}", *sys.argv[1:]])
'''


def entrypoint_script(entry: EntryPoint) -> str:
    """The text of ``entrypoints/<name>.py`` (written by ``innerlens mlproject --write``)."""
    return ENTRYPOINT_SCRIPT.format(name=entry.name, command=entry.command)


def entry_points() -> list[EntryPoint]:
    return list(ENTRY_POINTS)
