"""Vectorised seeds: the S seeds of one self-modeling cell trained as one stacked model.

Each seed still runs ``session.run`` in its own thread, with its own MLflow run, data,
initialisation, batch order, checkpoints and end-of-run measurements. Only the training epoch is
shared: when every seed has asked for its epoch, one of them runs it for all at once, with the S
models' parameters stacked (``torch.func.stack_module_state``), per-seed gradients from ``vmap``
and one AdamW over the stacked tensors (AdamW acts elementwise, so that is S independent
optimisers). The trained slices and their optimiser state are then written back into each seed's
model and optimiser, so evaluation, checkpoints, ``--resume`` and the LLC see an ordinary run.

One small model leaves a GPU idle; stacked, S of them fill it. On a CPU the process pool is the
better lever (bench/vectorised_seeds.py), so stacking is an option, not the default.
"""
from __future__ import annotations

import copy
import os
import threading
from typing import Any, Protocol

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from innerlens.engine import FlatAdamW, adamw
from innerlens.families.self_modeling_training import round_metrics, training_loss


class StackMember(Protocol):
    """What the stack needs of one seed's experiment (a ``StackMember``)."""

    model: torch.nn.Module
    optimizer: FlatAdamW
    config: Any
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def epoch_order(self) -> torch.Tensor: ...


class _Loss(torch.nn.Module):
    """The family's training loss as a module's ``forward``, so one ``functional_call`` computes it."""

    def __init__(self, model: torch.nn.Module, config: Any) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, ...]]:
        loss, task_loss, logits, layer_losses = training_loss(self.model, self.config, x, y)
        correct = (logits.argmax(-1) == y).sum()
        return loss, (task_loss.detach(), correct, {layer: value.detach() for layer, value in layer_losses.items()})


class SeedStack:
    """The meeting point of one cell's ``size`` seeds (one thread each)."""

    def __init__(self, size: int, timeout_s: float | None = None) -> None:
        self.size = size
        self.members: dict[int, StackMember] = {}
        self.results: dict[int, dict[str, float]] = {}
        self.interrupted = False
        # A seed that never arrives (it finished early, or died without aborting) must not hang the others forever.
        timeout_s = timeout_s if timeout_s is not None else float(os.environ.get("INNERLENS_STACK_TIMEOUT_S", "3600"))
        self.barrier = threading.Barrier(size, action=lambda: self.train_epoch([self.members[i] for i in range(size)]),
                                         timeout=timeout_s)
        # Building an experiment and measuring it seed torch's global generator: one seed at a time.
        self.lock = threading.Lock()
        self.params: dict[str, torch.Tensor] | None = None

    def train_round(self, member: StackMember, index: int) -> dict[str, float]:
        """Wait for every seed's epoch request; the last to arrive trains them all. When the stack was
        interrupted (Ctrl-C, SIGTERM) each waiting seed raises ``KeyboardInterrupt`` in its own thread,
        so its run ends KILLED; when a seed failed or never came, the others' runs end FAILED."""
        self.members[index] = member
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            if self.interrupted:
                raise KeyboardInterrupt("the stacked cell was interrupted") from None
            raise RuntimeError("another seed of this stacked cell failed or stopped arriving") from None
        return self.results[index]

    def abort(self, interrupted: bool = False) -> None:
        """Stop every seed waiting at the stack: a seed failed, or (``interrupted``) the process is stopping."""
        self.interrupted = self.interrupted or interrupted
        self.barrier.abort()

    def train_epoch(self, members: list[StackMember]) -> list[dict[str, float]]:
        """One epoch of every member at once, each on its own batch order; each member's metrics."""
        first = members[0]
        if self.params is None:
            params, self.buffers = stack_module_state([m.model for m in members])
            self.params = {name: value.detach().clone().requires_grad_() for name, value in params.items()}
            self.optimizer = adamw(self.params.values(), next(iter(self.params.values())).device, lr=first.config.lr,
                                   weight_decay=first.config.weight_decay)
            self.template = _Loss(copy.deepcopy(first.model).to("meta"), first.config).train()
            self._load_optimizer_state(members)

            def loss(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> Any:
                named = {f"model.{name}": value for name, value in {**params, **buffers}.items()}
                return functional_call(self.template, named, (x, y))

            self.gradients = vmap(grad(loss, has_aux=True), randomness="different")
        orders = [m.epoch_order() for m in members]
        x = torch.stack([m.data["train"][0] for m in members])
        y = torch.stack([m.data["train"][1] for m in members])
        seeds, n, batch_size = len(members), y.shape[1], first.config.batch_size
        loss_sum = torch.zeros(seeds, device=x.device)
        correct = torch.zeros(seeds, device=x.device)
        layer_sums = {layer: torch.zeros(seeds, device=x.device) for layer in first.model.layers}
        rows = torch.arange(seeds, device=x.device)[:, None]
        for start in range(0, n, batch_size):
            batch = torch.stack([order[start : start + batch_size] for order in orders])
            gradients, (task_loss, hits, layer_losses) = self.gradients(self.params, self.buffers, x[rows, batch], y[rows, batch])
            for name, value in gradients.items():
                self.params[name].grad = value
            self.optimizer.step()
            loss_sum += task_loss * batch.shape[1]
            correct += hits
            for layer, value in layer_losses.items():
                layer_sums[layer] += value * batch.shape[1]
        self._write_back(members)
        for index in range(seeds):
            self.results[index] = round_metrics(loss_sum[index], correct[index],
                                                {layer: sums[index] for layer, sums in layer_sums.items()}, n)
        return [self.results[index] for index in range(seeds)]

    def _write_back(self, members: list[StackMember]) -> None:
        """Each seed's slice of the weights and of AdamW's state, into its own model and optimiser."""
        step = self.optimizer.state[next(iter(self.params.values()))]["step"]  # every tensor's step count is the same
        with torch.no_grad():
            for index, member in enumerate(members):
                moments = member.optimizer.moments()
                for name, parameter in member.model.named_parameters():
                    stacked = self.params[name]
                    parameter.copy_(stacked[index])
                    state = self.optimizer.state[stacked]
                    moments[name]["exp_avg"].copy_(state["exp_avg"][index])
                    moments[name]["exp_avg_sq"].copy_(state["exp_avg_sq"][index])
                next(iter(moments.values()))["step"].copy_(step)  # one step tensor, shared by the seed's every weight

    def _load_optimizer_state(self, members: list[StackMember]) -> None:
        """Each seed's AdamW state (zero at the start, a resumed seed's own after a resume), stacked."""
        moments = [member.optimizer.moments() for member in members]
        for name, stacked in self.params.items():
            per_seed = [seed_moments[name] for seed_moments in moments]
            self.optimizer.state[stacked] = {
                "step": per_seed[0]["step"].clone(),
                "exp_avg": torch.stack([state["exp_avg"] for state in per_seed]),
                "exp_avg_sq": torch.stack([state["exp_avg_sq"] for state in per_seed]),
            }
