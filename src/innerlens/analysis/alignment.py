"""Representational alignment per layer: CKA with a reference embedding, with intervals, and whether a layer
beats its controls (the raw backbone, a ridge map of the training dimensions, the layer at initialisation)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from innerlens.analysis.cka import cka_interval, debiased_cka, linear_cka

RIDGE = "ridge"  # the supervised linear control's layer name
AT_INIT = "@init"  # suffix of the untrained model's layers


def alignment_table(layers: dict[str, np.ndarray], reference: np.ndarray, eval_dims: list[int], repeats: int, seed: int) -> pd.DataFrame:
    """CKA of every layer and control with the reference on the same (test) objects: all dims and
    held-out dims, linear and debiased, with intervals over object subsamples."""
    rows = []
    for subset, columns in (("all", slice(None)), ("heldout", eval_dims)):
        target = reference[:, columns]
        for layer, values in layers.items():
            kind = "backbone" if layer == "backbone" else RIDGE if layer == RIDGE else "init" if layer.endswith(AT_INIT) else "trained"
            for method, function in (("linear", linear_cka), ("debiased", debiased_cka)):
                interval = cka_interval(values, target, function, repeats=repeats, seed=seed)
                rows.append({"layer": layer, "kind": kind, "subset": subset, "method": method,
                             "value": interval.value, "low": interval.low, "high": interval.high})
    return pd.DataFrame(rows)


def beats_controls(cka: pd.DataFrame) -> dict[str, float]:
    """Per trained layer, subset and method: 1 when its CKA interval lies above every control's
    (backbone, ridge map, the same layer at initialisation), else 0. The claim "more aligned than
    the backbone" is made only where this is 1."""
    result = {}
    for (subset, method), rows in cka.groupby(["subset", "method"]):
        by_layer = rows.set_index("layer")
        for layer in rows.loc[rows["kind"] == "trained", "layer"]:
            controls = [c for c in ("backbone", RIDGE, f"{layer}{AT_INIT}") if c in by_layer.index]
            above = all(by_layer.loc[layer, "low"] > by_layer.loc[c, "high"] for c in controls)
            result[f"cka_{method}/{layer}/{subset}/beats_controls"] = float(above)
    return result
