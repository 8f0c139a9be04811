import pytest
import torch

from innerlens.data.splits import split_indices


@pytest.mark.parametrize("n", [10, 997, 5000])
def test_sizes_cover_everything_once(n: int) -> None:
    splits = split_indices(n, (0.7, 0.15, 0.15), seed=3)
    assert len(splits.val) == int(n * 0.15) and len(splits.test) == int(n * 0.15)
    combined = torch.cat([splits.train, splits.val, splits.test])
    assert sorted(combined.tolist()) == list(range(n))  # disjoint and complete


def test_deterministic_by_seed() -> None:
    a = split_indices(1000, (0.7, 0.15, 0.15), seed=1)
    b = split_indices(1000, (0.7, 0.15, 0.15), seed=1)
    c = split_indices(1000, (0.7, 0.15, 0.15), seed=2)
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))
    assert not torch.equal(a.val, c.val)


def test_custom_fractions() -> None:
    splits = split_indices(1000, (0.5, 0.3, 0.2), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (500, 300, 200)
