"""Every parameter of a model as a view into one contiguous buffer, its gradient likewise.

A small transformer has ~70 weight tensors. An update rule applied elementwise (AdamW, SGLD) then
runs each of its ops once on the buffer instead of once per tensor, and zeroing the gradients is
one fill; autograd accumulates each gradient straight into its view. The optimisers built on it:
``engine.FlatAdamW`` (training) and ``analysis.llc.FlatSGLD`` (the LLC's sampler step).
"""
from __future__ import annotations

from typing import Iterable

import torch


class FlatParameters:
    """Rebinds ``parameters`` (data and gradient) to views into two buffers, in the given order."""

    def __init__(self, parameters: Iterable[torch.Tensor]) -> None:
        self.views = list(parameters)
        self.data = torch.cat([p.detach().reshape(-1) for p in self.views])
        self.grad = torch.zeros_like(self.data)
        offset = 0
        for parameter in self.views:
            size = parameter.numel()
            parameter.data = self.data[offset : offset + size].view_as(parameter)
            parameter.grad = self.grad[offset : offset + size].view_as(parameter)
            offset += size

    def slices(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """``buffer`` (shaped like the flat data) cut into one view per parameter."""
        out, offset = [], 0
        for parameter in self.views:
            out.append(buffer[offset : offset + parameter.numel()].view_as(parameter))
            offset += parameter.numel()
        return out

    def check_bound(self, owner: str) -> None:
        """Refuse to step a model whose parameters or gradients have left the buffers (a ``.to(...)``,
        a replaced tensor, ``zero_grad(set_to_none=True)`` on the module): the update would miss them."""
        if not all(_inside(p, self.data) and _inside(p.grad, self.grad) for p in self.views):
            raise RuntimeError(f"a parameter or its gradient left {owner}'s buffer (moved, replaced or set to None "
                               "after the optimiser was built)")


def _inside(view: torch.Tensor | None, buffer: torch.Tensor) -> bool:
    start = buffer.data_ptr()
    return view is not None and start <= view.data_ptr() < start + buffer.numel() * buffer.element_size()
