"""Settled detection on synthetic training curves."""
from __future__ import annotations

from innerlens.analysis.settling import settling


def test_a_memorised_run_settles_where_its_window_began() -> None:
    loss = [1.0, 0.5, 0.1, 0.004, 0.003, 0.002, 0.001, 0.0008, 0.0005]
    acc = [0.5, 0.8, 0.97, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    result = settling(loss, acc, window=3)
    assert result.settled and result.epoch == 4


def test_a_run_mid_collapse_is_not_settled() -> None:
    loss = [0.002] * 8 + [0.4, 0.3]
    acc = [1.0] * 8 + [0.85, 0.9]
    assert not settling(loss, acc, window=3).settled


def test_a_plateau_settles_and_a_falling_loss_does_not() -> None:
    plateau = [1.0, 0.6, 0.35, 0.301, 0.300, 0.299, 0.300]
    acc = [0.6, 0.8, 0.88, 0.890, 0.891, 0.891, 0.892]
    assert settling(plateau, acc, window=4) .settled
    falling = [0.5 * 0.9**epoch for epoch in range(10)]
    assert not settling(falling, [0.9] * 10, window=4).settled


def test_a_history_shorter_than_the_window_is_not_settled() -> None:
    assert settling([0.001], [1.0], window=3).settled is False
