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
import time
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
    """The meeting point of one cell's ``size`` seeds (one thread each).

    A round starts when every seed still in the stack has asked for its next epoch; it trains those
    at the earliest epoch asked for, so seeds resumed from checkpoints of different epochs (a worker
    killed between two seeds' writes) catch up with each other, and each epoch is trained once per
    seed. A seed whose fit has ended, or failed, leaves (:meth:`leave`) and the others go on. The
    stack also decides when a checkpoint is due (:meth:`checkpoint_due`), so every seed writes at the
    same epoch.
    """

    def __init__(self, size: int, timeout_s: float | None = None, checkpoint_interval_s: float = 0.0) -> None:
        self.size = size
        self.members: dict[int, StackMember] = {}
        self.results: dict[int, dict[str, float]] = {}
        self.active = set(range(size))
        self.waiting: dict[int, int] = {}  # seed index -> the epoch it asked for
        self.interrupted = False
        self.failure = ""
        # A seed that never arrives (it died without leaving) must not hang the others forever.
        self.timeout_s = timeout_s if timeout_s is not None else float(os.environ.get("INNERLENS_STACK_TIMEOUT_S", "3600"))
        self.condition = threading.Condition()
        self.checkpoint_interval_s = checkpoint_interval_s
        self.last_checkpoint = time.monotonic()
        self.due: dict[int, bool] = {}
        # Building an experiment and measuring it seed torch's global generator: one seed at a time.
        self.lock = threading.Lock()
        self.params: dict[str, torch.Tensor] | None = None
        self.stacked_for: tuple[int, ...] = ()

    def train_round(self, member: StackMember, index: int, epoch: int) -> dict[str, float]:
        """Wait for every seed's epoch request; the last to arrive trains the earliest. When the stack
        was interrupted (Ctrl-C, SIGTERM) each waiting seed raises ``KeyboardInterrupt`` in its own
        thread, so its run ends KILLED; when the training itself failed, or a seed stopped arriving,
        the waiting seeds' runs end FAILED."""
        with self.condition:
            self.members[index] = member
            self.waiting[index] = epoch
            self._train_when_all_arrived()
            while index in self.waiting:
                self._raise_if_stopped()
                if not self.condition.wait(self.timeout_s):
                    self.failure = f"a seed of this stacked cell stopped arriving for {self.timeout_s:g} s"
                    self.condition.notify_all()
                    self._raise_if_stopped()
            return self.results.pop(index)

    def leave(self, index: int) -> None:
        """Seed ``index`` trains no more (its fit ended or failed): the others stop waiting for it."""
        with self.condition:
            self.active.discard(index)
            self.waiting.pop(index, None)
            self._train_when_all_arrived()

    def abort(self, interrupted: bool = False) -> None:
        """Stop every seed waiting at the stack: the process is stopping (``interrupted``) or it failed."""
        with self.condition:
            self.interrupted = self.interrupted or interrupted
            self.failure = self.failure or "the stacked cell was stopped"
            self.condition.notify_all()

    def checkpoint_due(self, index: int) -> bool:
        """Whether seed ``index`` writes its checkpoint after the epoch it just trained: decided once
        per round for every seed in it, so a cell's checkpoints stand at the same epoch."""
        return self.due.get(index, False)

    def _raise_if_stopped(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt("the stacked cell was interrupted")
        if self.failure:
            raise RuntimeError(self.failure)

    def _train_when_all_arrived(self) -> None:
        """With every active seed waiting, train those at the earliest epoch (holding the condition)."""
        if not self.waiting or set(self.waiting) != self.active or self.failure:
            return
        epoch = min(self.waiting.values())
        chosen = sorted(index for index, asked in self.waiting.items() if asked == epoch)
        try:
            self.train_epoch([self.members[index] for index in chosen], chosen)
        except BaseException as error:
            self.failure = f"the stacked epoch failed: {type(error).__name__}: {error}"
            self.condition.notify_all()
            raise
        due = time.monotonic() - self.last_checkpoint >= self.checkpoint_interval_s
        if due:
            self.last_checkpoint = time.monotonic()
        for index in chosen:
            self.due[index] = due
            del self.waiting[index]
        self.condition.notify_all()

    def train_epoch(self, members: list[StackMember], indices: list[int]) -> None:
        """One epoch of ``members`` (seeds ``indices``) at once, each on its own batch order; each
        member's metrics go to ``self.results``. A different set of members than the last round's is
        stacked afresh from the members themselves (their weights and AdamW state are always current)."""
        first = members[0]
        for member in members:  # a training epoch, as unstacked (a seed that caught up alone was left evaluating)
            member.model.train()
        if self.params is None or self.stacked_for != tuple(indices):
            self.stacked_for = tuple(indices)
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
        for place, index in enumerate(indices):
            self.results[index] = round_metrics(loss_sum[place], correct[place],
                                                {layer: sums[place] for layer, sums in layer_sums.items()}, n)

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
        """Each seed's AdamW state (zero at the start, a resumed seed's own after a resume), stacked.

        Seeds trained together are at the same epoch, so at the same AdamW step; a stacked tensor
        holds one step count, so a difference would be a bug, not a case to average away."""
        moments = [member.optimizer.moments() for member in members]
        steps = {float(next(iter(seed_moments.values()))["step"]) for seed_moments in moments}
        if len(steps) > 1:
            raise RuntimeError(f"seeds at one epoch disagree on AdamW's step count ({sorted(steps)}): not stackable")
        for name, stacked in self.params.items():
            per_seed = [seed_moments[name] for seed_moments in moments]
            self.optimizer.state[stacked] = {
                "step": per_seed[0]["step"].clone(),
                "exp_avg": torch.stack([state["exp_avg"] for state in per_seed]),
                "exp_avg_sq": torch.stack([state["exp_avg_sq"] for state in per_seed]),
            }
