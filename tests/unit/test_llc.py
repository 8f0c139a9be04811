"""The LLC estimator against models whose learning coefficient is known."""
from __future__ import annotations

import math

import pytest
import torch
from known_answers import SETTINGS, D, N, gaussian_nll, zero_function_data
from torch.utils.data import DataLoader, TensorDataset

from innerlens.analysis.known_llc import LinearRegression as Linear
from innerlens.analysis.llc import FlatSGLD, estimate_llc, shuffled_minibatches
from innerlens.analysis.llc_settings import PAPER_LLC


def test_paper_estimator_is_the_official_codes_settings() -> None:
    assert PAPER_LLC.nbeta == pytest.approx(512 / math.log(512)) and PAPER_LLC.nbeta == pytest.approx(82.07, abs=0.01)
    assert (PAPER_LLC.epsilon, PAPER_LLC.gamma, PAPER_LLC.num_chains, PAPER_LLC.num_draws, PAPER_LLC.num_burnin) == (1e-4, 100.0, 4, 1000, 0)
    assert PAPER_LLC.batch_size == 512 and PAPER_LLC.trace_discard == 0.5  # its code averages the trace's second half


def test_trace_discard_averages_only_the_kept_draws() -> None:
    from dataclasses import replace

    x, y = zero_function_data()
    settings = replace(SETTINGS, num_draws=40, num_burnin=0)
    whole = estimate_llc(Linear(torch.zeros(D)), x, y, gaussian_nll, settings, seed=2)
    half = estimate_llc(Linear(torch.zeros(D)), x, y, gaussian_nll, replace(settings, trace_discard=0.5), seed=2)
    init = float(gaussian_nll(Linear(torch.zeros(D)), x, y))
    expected = [settings.resolved_nbeta(N) * (sum(trace[20:]) / 20 - init) for trace in whole.loss_traces]
    assert half.chain_means == pytest.approx(expected, rel=1e-5)
    assert half.chain_means != pytest.approx(whole.chain_means, rel=1e-3)


@pytest.mark.parametrize("sampler", ["devinterp", "vectorised"])
def test_family_default_settings_recover_d_over_2_at_the_family_training_size(sampler: str) -> None:
    from innerlens.analysis.known_llc import gaussian_nll_regression
    from innerlens.families.self_modeling import SelfModelingConfig

    config = SelfModelingConfig(llc_sampler=sampler)
    settings = config.llc_settings  # exactly the settings every self-modeling run uses (with either sampler)
    assert settings.num_chains >= 4 and settings.num_draws >= 500
    assert settings.num_burnin + settings.num_draws >= 3 * 2 / (settings.epsilon * settings.gamma)  # chains outlast the localisation time
    model, x, y, loss, answer = gaussian_nll_regression(config.train_size)
    estimate = estimate_llc(model, x, y, loss, settings, seed=0)
    assert abs(estimate.mean - answer) <= 0.10 * answer, estimate.mean
    assert len(estimate.loss_traces) == settings.num_chains and len(estimate.loss_traces[0]) == settings.num_draws


def test_minibatches_by_index_are_the_ones_a_shuffled_loader_draws_epoch_after_epoch() -> None:
    x, y = torch.arange(50).view(25, 2), torch.arange(25)
    reference = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(7))
    fast = shuffled_minibatches(x, y, 4, seed=7)
    assert len(fast) == len(reference) == 7
    for _ in range(3):  # each epoch reshuffles from the same generator
        drawn = [(a, b) for a, b in fast]
        assert len(drawn) == 7 and all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(drawn, reference))
    assert not torch.equal(drawn[0][1], y[:4])  # shuffled


def _sgld_walk(optimizer_class: type, model: torch.nn.Module, steps: int) -> torch.Tensor:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # devinterp's SGLD warns that it is deprecated
        optimizer = optimizer_class(model.parameters(), lr=1e-3, localization=50.0, nbeta=30.0)
    x, y = zero_function_data()
    torch.manual_seed(3)  # devinterp seeds each chain's global generator; both draw their noise from it
    for step in range(steps):
        gaussian_nll(model, x[step * 20 : (step + 1) * 20], y[step * 20 : (step + 1) * 20]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_flat_sgld_steps_as_devinterps_sgld_noise_included() -> None:
    from devinterp.optim.sgld import SGLD

    def one_tensor() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Linear(D, 1, bias=False)

    reference, flat = _sgld_walk(SGLD, one_tensor(), 30), _sgld_walk(FlatSGLD, one_tensor(), 30)
    assert torch.equal(reference, flat)
    assert not torch.equal(flat, torch.cat([p.detach().reshape(-1) for p in one_tensor().parameters()]))  # it moved
