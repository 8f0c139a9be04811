"""The explicit list of families: each one's options, summary, headline metrics and code.

A family is declared once, here: one :class:`EntryPoint` in :data:`FAMILIES`. The CLI's order, the
MLproject file and ``entrypoints/<name>.py`` (:mod:`innerlens.commands`) derive from it; tune offers
the families whose Config declares a ``search`` space. It imports only the option classes (light:
no torch, mlflow or pandas); a family's code is imported by its module name, the first time it is
needed, so ``innerlens --help`` and every option error stay fast.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from innerlens.config import Config
from innerlens.configs.generator import GeneratorConfig
from innerlens.configs.grokking import GrokkingConfig
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.configs.metalign import MetalignConfig
from innerlens.configs.selector import SelectorConfig
from innerlens.configs.self_modeling import SelfModelingConfig


@dataclass(frozen=True)
class EntryPoint:
    """An MLproject entry point and CLI command: its options, what it is, and where its code is.

    ``module`` is imported by :meth:`load`; a family's module has ``build`` and ``report`` (what
    :func:`innerlens.session.run` needs); a driver names the function that runs it in ``function``.
    """

    name: str
    config: type[Config]
    summary: str
    module: str
    function: str = "run"
    is_family: bool = True
    headline_metrics: tuple[str, ...] = ()  # what compare shows when no --metrics are given
    follows: str | None = None  # a driver: the family it is listed after in the CLI (None: after every family)

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    @property
    def tunable(self) -> bool:
        """Whether ``tune --family`` takes it: its options declare a search space."""
        return self.is_family and self.config.search is not None

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


FAMILIES: tuple[EntryPoint, ...] = (
    EntryPoint("self_modeling", SelfModelingConfig, "Train one self-modeling variant.", "innerlens.families.self_modeling",
               headline_metrics=("train/acc", "val/acc", "test/acc", "val/loss", "weights/std")),
    EntryPoint("grokking", GrokkingConfig,
               "Delayed generalization on modular arithmetic (Nanda et al. 2023 defaults), with phase detection.", "innerlens.families.grokking",
               headline_metrics=("train/acc", "val/acc", "test/acc", "train/loss", "val/loss")),
    EntryPoint("introspection", IntrospectionConfig,
               "A TransformerLens model learns to report one of its own neuron activations.", "innerlens.families.introspection",
               headline_metrics=("train/loss", "val/loss", "test/loss")),
    EntryPoint("generator", GeneratorConfig,
               "Fine-tune a TransformerLens language model on a corpus, log the gradient noise scale, register it.", "innerlens.families.generator",
               headline_metrics=("train/loss", "val/loss")),
    EntryPoint("selector", SelectorConfig,
               "A classifier head on a frozen generator's hidden states, with attention heatmaps and evaluation plots.", "innerlens.families.selector",
               headline_metrics=("train/loss", "val/auc", "test/auc", "val/loss")),
    EntryPoint("metalign", MetalignConfig,
               "Meta-learn function learning over object embeddings; CKA with a reference embedding and learning curves against humans.",
               "innerlens.families.metalign", headline_metrics=("train/loss", "val/acc", "test/acc", "test/acc_last_quarter")),
)


def family(name: str) -> EntryPoint:
    """The family called ``name`` (tune's ``--family`` choices are these names)."""
    found = [entry for entry in FAMILIES if entry.name == name]
    if not found:
        raise KeyError(name)
    return found[0]
