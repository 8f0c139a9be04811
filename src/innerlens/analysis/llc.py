"""Local learning coefficient (RLCT estimate) by SGLD, through devinterp 1.3.

The estimate λ̂ = nβ (E_w[L(w)] − L(w*)) depends on the step size ε, the localisation γ and
nβ, so :class:`LLCSettings` is logged with every run and must stay fixed across runs that are
compared. L(w*) is computed on the whole dataset, not on a few minibatches: minibatch noise
in L(w*) multiplied by nβ otherwise dominates the estimate.

Two samplers run the same SGLD (devinterp's update: w ← w − ε/2 (nβ ∇L_B(w) + γ (w − w*)) + √ε N(0, 1)):
``devinterp`` runs the library's sampler chain after chain (the default and the reference), with
its SGLD step applied to one flat buffer (:class:`FlatSGLD`, equal to devinterp's, tested);
``vectorised`` steps every chain at once as one batched model (``torch.func``), for devices a
single small model leaves idle. On a CPU core it is not faster (bench/llc_cost.py).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from innerlens.analysis.llc_settings import LLCEstimate, LLCSettings
from innerlens.flat_parameters import FlatParameters

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class _EvalModeOnly(torch.nn.Module):
    """Keeps the wrapped model in eval mode: devinterp calls ``.train()``, LLC wants dropout off."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> "_EvalModeOnly":
        # devinterp calls this every step; the wrapped model was put in eval mode once, and
        # recursing through a TransformerLens bridge's many hook modules cost a third of a step.
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def estimate_llc(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    settings: LLCSettings,
    seed: int,
    diagnose: bool = False,
) -> LLCEstimate:
    """Estimate the LLC of ``model`` at its current weights on (x, y) with ``loss_fn``.

    ``diagnose`` steps with devinterp's own SGLD and its MALA acceptance callback (the step the
    Langevin proposal would have been accepted with; near 1 when ε is small enough): slower, for validation.

    ``loss_fn(model, x, y)`` must be the mean per-example loss of the quantity whose
    geometry is measured (e.g. the task loss only, without auxiliary terms); it may only call
    ``model(inputs)``, since the vectorised sampler hands it a stand-in for each chain.
    """
    model.eval()
    with torch.no_grad():
        init_loss = float(loss_fn(model, x, y))
    nbeta = settings.resolved_nbeta(len(x))
    mala = None
    if diagnose:
        traces, mala = _sample_devinterp(model, x, y, loss_fn, settings, seed, nbeta, init_loss, diagnose=True)
    else:
        sample = _sample_vectorised if settings.sampler == "vectorised" else _sample_devinterp
        traces = sample(model, x, y, loss_fn, settings, seed, nbeta, init_loss)  # [chains, draws]
    kept = traces[:, int(settings.num_draws * settings.trace_discard):]
    chains = (nbeta * (kept.mean(dim=1) - init_loss)).tolist()
    mean = sum(chains) / len(chains)
    std = math.sqrt(sum((c - mean) ** 2 for c in chains) / (len(chains) - 1)) if len(chains) > 1 else 0.0
    return LLCEstimate(mean=mean, std=std, chain_means=chains, loss_traces=traces.tolist(), mala_acceptance=mala)


def _sample_vectorised(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                       settings: LLCSettings, seed: int, nbeta: float, init_loss: float) -> torch.Tensor:
    """All chains as one batched model: each chain its own weights, minibatches and noise."""
    from torch.func import functional_call, vmap

    chains, n = settings.num_chains, len(x)
    batch = min(settings.batch_size, n)
    device = x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    # functional_call swaps weights in by attribute; on a TransformerLens bridge, whose components
    # proxy their attributes, one swapped weight is not put back. A copy keeps the caller's model whole.
    model = copy.deepcopy(model)
    start = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    weights = {name: p.expand(chains, *p.shape).clone().requires_grad_(True) for name, p in start.items()}

    def chain_loss(chain_weights: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return loss_fn(lambda batch_inputs: functional_call(model, (chain_weights, buffers), (batch_inputs,)), inputs, targets)

    batched_loss = vmap(chain_loss)
    per_epoch = n // batch
    order = torch.empty(chains, 0, dtype=torch.long, device=device)
    traces = torch.empty(chains, settings.num_draws, device=device)  # one copy to the host at the end, not a sync per step
    for step in range(settings.num_burnin + settings.num_draws):
        if step % per_epoch == 0:  # a fresh permutation per chain and epoch, as a shuffled DataLoader gives
            order = torch.stack([torch.randperm(n, generator=generator, device=device) for _ in range(chains)])
        rows = order[:, (step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        losses = batched_loss(weights, x[rows], y[rows])
        # Weights the loss does not read (an auxiliary head) get no gradient: they cannot change a draw, so stay put.
        grads = torch.autograd.grad(losses.sum(), list(weights.values()), allow_unused=True)
        with torch.no_grad():
            for (name, w), grad in zip(weights.items(), grads):
                if grad is None:
                    continue
                drift = nbeta * grad + settings.gamma * (w - start[name])
                noise = torch.randn(w.shape, generator=generator, device=device)
                w.add_(drift, alpha=-0.5 * settings.epsilon).add_(noise, alpha=settings.epsilon**0.5)
        if step >= settings.num_burnin:
            traces[:, step - settings.num_burnin] = losses.detach()
    return traces.cpu()


class FlatSGLD(torch.optim.Optimizer):
    """devinterp 1.3's SGLD step, w ← w − ε/2 (nβ ∇L_B(w) + γ (w − w*)) + √ε N(0, 1), on one flat buffer.

    devinterp's own ``SGLD`` runs about seven ops per weight tensor each step; on the ~70 tensors of
    a small transformer that is a tenth of an LLC estimate on a CPU. This runs them once on a
    buffer every parameter is a view into (:class:`~innerlens.flat_parameters.FlatParameters`),
    in devinterp's order, with the noise from torch's global generator (which devinterp seeds per
    chain). Equal to devinterp's step, noise included, for a model with one weight tensor (tested);
    with more, the noise is the same distribution drawn in one call. Parameters the loss does not
    read (no gradient) move by localisation and noise alone, as in devinterp. Only the options the
    LLC uses: ``lr`` (ε), ``localization`` (γ), ``nbeta``.
    """

    def __init__(self, params: Any, lr: float, localization: float, nbeta: float, metrics: list[str] | None = None) -> None:
        if metrics:
            raise ValueError(f"FlatSGLD tracks no metrics, asked for {metrics}")
        self.buffers = FlatParameters(params)
        super().__init__(self.buffers.views, {"lr": lr, "localization": localization, "nbeta": nbeta})
        self.initial = self.buffers.data.clone()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.buffers.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        self.buffers.check_bound("FlatSGLD")
        group, weights = self.param_groups[0], self.buffers.data
        drift = self.buffers.grad * group["nbeta"]
        drift.add_(weights - self.initial, alpha=group["localization"])
        noise = torch.normal(mean=0.0, std=1.0, size=weights.size(), device=weights.device)
        weights.add_(drift, alpha=-0.5 * group["lr"])
        weights.add_(noise, alpha=group["lr"] ** 0.5)


class _WholeBatches(TensorDataset):
    """A TensorDataset that a DataLoader indexes one whole minibatch at a time."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        rows = torch.as_tensor(indices)
        return tuple(tensor[rows] for tensor in self.tensors)


def _as_drawn(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def shuffled_minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`` seeded with ``seed``: the same
    minibatches, epoch after epoch, indexed a whole batch at a time instead of example by example
    and stacked (a sixth of the loader's cost per SGLD step)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_WholeBatches(x, y), batch_size=batch_size, shuffle=True, generator=generator, collate_fn=_as_drawn)


def _sample_devinterp(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                      settings: LLCSettings, seed: int, nbeta: float, init_loss: float, diagnose: bool = False) -> Any:
    """devinterp 1.3's sampler (its chains, seeds, minibatches and loss traces), one chain after
    another, stepping with :class:`FlatSGLD`; with ``diagnose``, with devinterp's SGLD and its MALA
    acceptance callback, returning (traces, mean acceptance)."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.mala import MalaAcceptanceRate
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    wrapped = _EvalModeOnly(model).eval()
    loader = shuffled_minibatches(x, y, min(settings.batch_size, len(x)), seed)
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"sampling_method": FlatSGLD, "callbacks": []}
    if diagnose:
        mala = MalaAcceptanceRate(num_chains=settings.num_chains, num_draws=settings.num_draws, nbeta=nbeta,
                                  learning_rate=settings.epsilon, device=device)
        kwargs = {"sampling_method": SGLD, "callbacks": [mala]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate_learning_coeff_with_summary(
            wrapped,
            loader,
            evaluate=lambda m, batch: (loss_fn(m, batch[0], batch[1]), {}),
            optimizer_kwargs={"lr": settings.epsilon, "localization": settings.gamma, "nbeta": nbeta},
            **kwargs,
            num_chains=settings.num_chains,
            num_draws=settings.num_draws,
            num_burnin_steps=settings.num_burnin,
            init_loss=init_loss,
            seed=seed,
            device=device,
            verbose=False,
        )
    traces = torch.as_tensor(result["loss/trace"], dtype=torch.float32)
    if diagnose:
        return traces, float(result["mala_accept/trace"][:, 1:].mean())  # devinterp leaves the first draw at 0
    return traces
