"""The timing control: a metric that follows the epoch of generalisation is found to, one that does not is not."""
from __future__ import annotations

import numpy as np
import pandas as pd

from innerlens.drivers.generalisation_timing import CENSORED, EPOCH, generalisation_timing, runs_by_cell
from innerlens.drivers.self_modeling_comparison import SETTLED
from innerlens.viz.self_modeling import timing_scatter


def summaries(seed: int) -> pd.DataFrame:
    """Two arms x 12 seeds: the LLC rises with the epoch of generalisation, the weight SD is noise, and
    one run never generalised (censored) with an LLC that would break the trend if it were counted."""
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("baseline", "cell"):
        for s in range(12):
            epoch = float(rng.integers(10, 90))
            censored = float(group == "cell" and s == 0)
            values = {"val/epoch_to_acc_0.95": 101.0 if censored else epoch, "val/censored": censored,
                      "llc/final_mean": 1.0 if censored else 300 + 20 * epoch + rng.normal(0, 10),
                      "weights/std_final": rng.normal(0.1, 0.01)}
            rows += [{"group": group, "seed": s, "key": key, "value": value} for key, value in values.items()]
    return pd.DataFrame(rows)


def test_a_metric_that_tracks_the_epoch_of_generalisation_is_told_from_one_that_does_not() -> None:
    result = generalisation_timing(summaries(0), ["baseline", "cell"])
    assert result["runs"] == 24 and result["generalised"] == 23  # the censored run is left out
    llc, spread = result["metrics"]["llc/final_mean"], result["metrics"]["weights/std_final"]
    assert llc["spearman_rho"] > 0.95 and llc["p"] < 1e-6
    assert abs(spread["spearman_rho"]) < 0.5
    assert all(llc["median_late"][group] > llc["median_early"][group] for group in ("baseline", "cell"))
    assert set(result["metrics"]) == {"llc/final_mean", "weights/std_final"}  # only primary metrics the study logged


def test_the_timing_figure_draws_every_generalised_run_once_per_measure() -> None:
    table = summaries(1)
    table = pd.concat([table, table[table["key"] == "val/censored"].assign(key=SETTLED, value=lambda t: (t["seed"] % 2).astype(float))])
    runs = runs_by_cell(table, ["baseline", "cell"])
    generalised = runs[runs[CENSORED] == 0]
    keys = ["llc/final_mean", "weights/std_final"]
    figure = timing_scatter(generalised, EPOCH, keys, SETTLED)
    for ax, key in zip(figure.axes, keys):
        drawn = np.concatenate([collection.get_offsets() for collection in ax.collections])
        assert len(drawn) == 23  # the censored run is not drawn
        assert sorted(map(tuple, drawn)) == sorted(zip(generalised[EPOCH], generalised[key]))
