"""The explicit list of families: each one's options, summary, headline metrics and code.

A family is declared once, here: one :class:`EntryPoint` in :data:`FAMILIES`. The CLI's order, the
MLproject file and ``entrypoints/<name>.py`` (:mod:`innerlens.commands`) derive from it; tune offers
the families whose Config declares a ``search`` space. It imports only the option classes (light:
no torch, mlflow or pandas); a family's code is imported by a plain ``import`` inside its loader,
the first time it is needed, so ``innerlens --help`` and every option error stay fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from innerlens.config import Config
from innerlens.configs.generator import GeneratorConfig
from innerlens.configs.grokking import GrokkingConfig
from innerlens.configs.introspection import IntrospectionConfig
from innerlens.configs.metalign import MetalignConfig
from innerlens.configs.selector import SelectorConfig
from innerlens.configs.self_modeling import SelfModelingConfig


@dataclass(frozen=True)
class EntryPoint:
    """An MLproject entry point and CLI command: its options, what it is, and how to load its code.

    ``load`` returns the module; a family's module has ``build`` and ``report`` (what
    :func:`innerlens.session.run` needs); a driver names the function that runs it in ``function``.
    """

    name: str
    config: type[Config]
    summary: str
    load: Callable[[], ModuleType]
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


def _self_modeling() -> ModuleType:
    from innerlens.families import self_modeling

    return self_modeling


def _grokking() -> ModuleType:
    from innerlens.families import grokking

    return grokking


def _introspection() -> ModuleType:
    from innerlens.families import introspection

    return introspection


def _generator() -> ModuleType:
    from innerlens.families import generator

    return generator


def _selector() -> ModuleType:
    from innerlens.families import selector

    return selector


def _metalign() -> ModuleType:
    from innerlens.families import metalign

    return metalign


FAMILIES: tuple[EntryPoint, ...] = (
    EntryPoint("self_modeling", SelfModelingConfig, "Train one self-modeling variant.", _self_modeling,
               headline_metrics=("train/acc", "val/acc", "test/acc", "val/loss", "weights/std")),
    EntryPoint("grokking", GrokkingConfig,
               "Delayed generalization on modular arithmetic (Nanda et al. 2023 defaults), with phase detection.", _grokking,
               headline_metrics=("train/acc", "val/acc", "test/acc", "train/loss", "val/loss")),
    EntryPoint("introspection", IntrospectionConfig,
               "A TransformerLens model learns to report one of its own neuron activations.", _introspection,
               headline_metrics=("train/loss", "val/loss", "test/loss")),
    EntryPoint("generator", GeneratorConfig,
               "Fine-tune a TransformerLens language model on a corpus, log the gradient noise scale, register it.", _generator,
               headline_metrics=("train/loss", "val/loss")),
    EntryPoint("selector", SelectorConfig,
               "A classifier head on a frozen generator's hidden states, with attention heatmaps and evaluation plots.", _selector,
               headline_metrics=("train/loss", "val/auc", "test/auc", "val/loss")),
    EntryPoint("metalign", MetalignConfig,
               "Meta-learn function learning over object embeddings; CKA with a reference embedding and learning curves against humans.",
               _metalign, headline_metrics=("train/loss", "val/acc", "test/acc", "test/acc_last_quarter")),
)


def family(name: str) -> EntryPoint:
    """The family called ``name`` (tune's ``--family`` choices are these names)."""
    found = [entry for entry in FAMILIES if entry.name == name]
    if not found:
        raise KeyError(name)
    return found[0]
