"""Stacked seeds in one process: budgets, catch-up after uneven resumes, a failed member (no store)."""
from __future__ import annotations

import pytest
from support import TINY_MODEL

from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig
from innerlens.errors import ConfigError

TINY = dict(**TINY_MODEL, max_epochs=3, measure_llc=False, gamma_sensitivity=False, workers=0)


def test_stacking_needs_a_fixed_budget() -> None:
    with pytest.raises(ConfigError, match="--stack-seeds"):
        SelfModelingComparisonConfig(stack_seeds=True, patience=5)


def test_seeds_resumed_at_different_epochs_catch_up_and_then_checkpoint_together() -> None:
    """A worker killed between two seeds' checkpoint writes leaves them at different epochs: the stack
    trains the one behind alone until they meet, each epoch once, and from then on decides one
    checkpoint epoch for both; the result is the unstacked training's."""
    import threading

    import torch

    from innerlens.families.seed_stack import SeedStack
    from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

    config = {key: value for key, value in TINY.items() if key not in ("gamma_sensitivity", "workers")}
    single = [SelfModelingExperiment(SelfModelingConfig(variant="baseline", seed=seed, **config), torch.device("cpu"))
              for seed in (0, 1)]
    stacked = [SelfModelingExperiment(SelfModelingConfig(variant="baseline", seed=seed, **config), torch.device("cpu"))
               for seed in (0, 1)]
    for epoch in (1, 2, 3, 4):
        for experiment in single:
            experiment.train_round(epoch)
    stacked[0].train_round(1)
    stacked[0].train_round(2)  # seed 0 stands at epoch 2 (as restored from its checkpoint: in train mode), seed 1 at epoch 0
    stack = SeedStack(2, timeout_s=60, checkpoint_interval_s=0.0)
    trained: dict[int, list[int]] = {0: [], 1: []}
    due: dict[int, list[tuple[int, bool]]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def seed(index: int, first: int) -> None:
        try:
            for epoch in range(first, 5):
                stack.train_round(stacked[index], index, epoch)
                stacked[index].evaluate(epoch)  # as the engine does: the model is left in eval mode between rounds
                trained[index].append(epoch)
                due[index].append((epoch, stack.checkpoint_due(index)))
        except BaseException as error:
            errors.append(error)
        finally:
            stack.leave(index)

    threads = [threading.Thread(target=seed, args=(0, 3)), threading.Thread(target=seed, args=(1, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and trained == {0: [3, 4], 1: [1, 2, 3, 4]}
    assert [d for d in due[1] if d[0] >= 3] == due[0] and all(flag for _, flag in due[0])  # interval 0: due every epoch
    for alone, together in zip(single, stacked):  # what the run logs, as the unstacked test compares it
        expected, got = alone.evaluate(4), together.evaluate(4)
        assert [got[k] for k in ("val/loss", "val/acc", "test/loss")] == pytest.approx(
            [expected[k] for k in ("val/loss", "val/acc", "test/loss")], rel=2e-3, abs=2e-3)


def test_a_seed_that_fails_leaves_and_the_others_finish() -> None:
    """A failed member leaves the stack: the other seeds train on instead of waiting forever."""
    import threading

    import torch

    from innerlens.families.seed_stack import SeedStack
    from innerlens.families.self_modeling import SelfModelingConfig, SelfModelingExperiment

    config = {key: value for key, value in TINY.items() if key not in ("gamma_sensitivity", "workers")}
    members = [SelfModelingExperiment(SelfModelingConfig(variant="baseline", seed=seed, **config), torch.device("cpu"))
               for seed in (0, 1)]
    stack = SeedStack(2, timeout_s=60)
    finished: list[int] = []

    def survivor() -> None:
        for epoch in (1, 2, 3):
            stack.train_round(members[0], 0, epoch)
        finished.append(0)
        stack.leave(0)

    thread = threading.Thread(target=survivor)
    thread.start()
    stack.train_round(members[1], 1, 1)
    stack.leave(1)  # seed 1 failed after its first epoch
    thread.join(timeout=120)
    assert not thread.is_alive() and finished == [0]
