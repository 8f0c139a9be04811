"""One run of a family, with everything said explicitly: ``session.run(family, config, parent=...,
callbacks=...)`` returns what the run produced, not only where it was logged.

A driver (tune, a study) nests a run under its parent by passing a :class:`RunContext`, watches
its evaluations by passing engine callbacks (an Optuna pruner), and reads the objective from the
returned :class:`RunResult` instead of asking the tracking server for it again.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from innerlens import registry
from innerlens.results import RunResult

if TYPE_CHECKING:
    from innerlens.config import Config
    from innerlens.registry import EntryPoint
    from innerlens.tracking import RunContext


def run(family: str | EntryPoint, config: Config, *, parent: RunContext | None = None,
        callbacks: Sequence[Any] = (), progress: bool = True) -> RunResult:
    """Train ``config`` as one run of ``family`` (a name in :mod:`innerlens.registry`)."""
    entry = registry.family(family) if isinstance(family, str) else family
    return entry.load().run(config, parent=parent, callbacks=tuple(callbacks), progress=progress)
