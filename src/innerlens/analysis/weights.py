"""Weight statistics over training."""
from __future__ import annotations

import re

import torch


def spread(tensors: list[torch.Tensor]) -> float:
    """Std of every entry of ``tensors`` taken together."""
    return torch.cat([t.detach().flatten() for t in tensors]).std().item()


def weight_std(model: torch.nn.Module) -> dict[str, float]:
    """Std of all weight matrices together (``all``) and per transformer block (``layer_<l>``).

    Biases and norm gains are left out: their scale says little about how spread the learned
    weights are, and they would mask changes in the matrices.
    """
    groups: dict[str, list[torch.Tensor]] = {"all": []}
    for name, param in model.named_parameters():
        if param.ndim < 2:
            continue
        flat = param.detach().flatten()
        groups["all"].append(flat)
        match = re.search(r"(?:blocks|layers)\.(\d+)\.", name)
        if match:
            groups.setdefault(f"layer_{match.group(1)}", []).append(flat)
    return {key: torch.cat(values).std().item() for key, values in groups.items() if values}
