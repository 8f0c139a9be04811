"""grokking-sweep's value lists: fractions that split the rest, whole batch sizes (no store)."""
from __future__ import annotations

import pytest

from innerlens.drivers.grokking_sweep import GrokkingSweepConfig
from innerlens.errors import ConfigError

TINY_SWEEP = dict(
    p=23, train_fraction=0.7, val_fraction=0.15, test_fraction=0.15, lr=3e-3, d_model=32, n_heads=4, d_head=8,
    d_mlp=64, max_steps=300, eval_every=50, analysis_every=150, snapshots=3, dashboard=False,
    generalization_threshold=0.2,
)


def test_train_fraction_values_split_the_rest_evenly() -> None:
    config = GrokkingSweepConfig(**{**TINY_SWEEP, "max_steps": 100}, sweep="train_fraction", values=(0.5,), seeds=(3,))
    (single,) = config.single_runs()
    assert (single.train_fraction, single.val_fraction, single.test_fraction, single.seed) == (0.5, 0.25, 0.25, 3)


def test_batch_size_values_must_be_whole() -> None:
    with pytest.raises(ConfigError, match="whole numbers"):
        GrokkingSweepConfig(**TINY_SWEEP, sweep="batch_size", values=(16.5,))
