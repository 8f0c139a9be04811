"""Representational alignment per layer: CKA with a reference embedding, with intervals, and whether a layer
beats its controls (the raw backbone, a ridge map of the training dimensions, the layer at initialisation)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from innerlens.analysis.cka import cka_interval, debiased_cka, linear_cka, object_subsamples, subsample_interval

RIDGE = "ridge"  # the supervised linear control's layer name
AT_INIT = "@init"  # suffix of the untrained model's layers


def alignment_table(layers: dict[str, np.ndarray], reference: np.ndarray, eval_dims: list[int], repeats: int, seed: int) -> pd.DataFrame:
    """CKA of every layer and control with the reference on the same (test) objects: all dims and
    held-out dims, linear and debiased, with m-out-of-n intervals over half-samples of the objects.
    Every row uses the same half-samples (``draws``), so two rows can be compared pair by pair."""
    subsets = object_subsamples(len(reference), repeats, seed)
    rows = []
    for subset, columns in (("all", slice(None)), ("heldout", eval_dims)):
        target = reference[:, columns]
        for layer, values in layers.items():
            kind = "backbone" if layer == "backbone" else RIDGE if layer == RIDGE else "init" if layer.endswith(AT_INIT) else "trained"
            for method, function in (("linear", linear_cka), ("debiased", debiased_cka)):
                interval = cka_interval(values, target, function, subsets=subsets)
                rows.append({"layer": layer, "kind": kind, "subset": subset, "method": method, "value": interval.value,
                             "low": interval.low, "high": interval.high, "draws": interval.draws,
                             "objects": len(reference), "subsample": len(subsets[0])})
    return pd.DataFrame(rows)


def beats_controls(cka: pd.DataFrame) -> dict[str, float]:
    """Per trained layer, subset and method: 1 when the layer's CKA exceeds every control's (backbone,
    ridge map, the same layer at initialisation) by a paired interval above 0: the difference on each
    shared half-sample, rescaled m-out-of-n, Holm-free because each control must be beaten. The claim
    "more aligned than the backbone" is made only where this is 1."""
    result = {}
    for (subset, method), rows in cka.groupby(["subset", "method"]):
        by_layer = rows.set_index("layer")
        for layer in rows.loc[rows["kind"] == "trained", "layer"]:
            controls = [c for c in ("backbone", RIDGE, f"{layer}{AT_INIT}") if c in by_layer.index]
            result[f"cka_{method}/{layer}/{subset}/beats_controls"] = float(all(
                paired_difference(by_layer.loc[layer], by_layer.loc[control])[0] > 0 for control in controls))
    return result


def paired_difference(row: pd.Series, control: pd.Series, confidence: float = 0.95) -> tuple[float, float]:
    """Interval of (this CKA − the control's) from their differences on the same half-samples."""
    draws = np.asarray(row["draws"]) - np.asarray(control["draws"])
    return subsample_interval(row["value"] - control["value"], draws, int(row["objects"]), int(row["subsample"]), confidence)
