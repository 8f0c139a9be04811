"""Vectorised seeds: a cell's seeds trained as one stacked model give the runs the unstacked seeds give."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from support import TINY_MODEL

from innerlens import tracking
from innerlens.drivers.self_modeling_comparison import SelfModelingComparisonConfig, run_comparison, run_summaries

TINY = dict(**TINY_MODEL, max_epochs=3, measure_llc=False, gamma_sensitivity=False, workers=0)


def _histories(parent_id: str) -> dict[tuple[str, str], dict[str, list[float]]]:
    client = MlflowClient()
    return {(child.data.tags[tracking.TAG_VARIANT], child.data.tags[tracking.TAG_SEED]):
            {key: [m.value for m in sorted(client.get_metric_history(child.info.run_id, key), key=lambda m: m.step)]
             for key in ("train/loss", "val/loss", "val/acc", "weights/std", "selfmodel/layer_1/loss") if key in child.data.metrics}
            for child in tracking.children(parent_id)}


def test_stacked_seeds_equal_unstacked_ones_run_for_run(local_store: str) -> None:
    parents = {}
    for stacked in (False, True):
        config = SelfModelingComparisonConfig(variants=("baseline", "middle_layer"), seeds=(0, 1, 2), self_model_weights=(0.1,),
                                              stack_seeds=stacked, **TINY)
        parents[stacked] = run_comparison(config, progress=False)
    unstacked, stacked = _histories(parents[False]), _histories(parents[True])
    assert sorted(stacked) == sorted(unstacked) and len(stacked) == 6  # one run per (variant, seed), same tags
    for run, curves in unstacked.items():
        assert set(stacked[run]) == set(curves)
        for key, values in curves.items():
            assert stacked[run][key] == pytest.approx(values, rel=2e-3, abs=2e-3), (run, key)
    summaries = {s: run_summaries(p).set_index(["group", "seed", "key"])["value"].sort_index() for s, p in parents.items()}
    assert list(summaries[True].index) == list(summaries[False].index)
    assert summaries[True].to_numpy() == pytest.approx(summaries[False].to_numpy(), rel=2e-3, abs=2e-3)
    assert all(child.info.status == "FINISHED" for child in tracking.children(parents[True]))
