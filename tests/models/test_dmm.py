"""The deep Markov model against exact answers: its linear-Gaussian special case against a
Kalman filter written by hand, padded against unpadded sequences for model and guide, and the
pair contract."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from contract import Pair, PairContract
from pyro import poutine

from pyrovae.guides import MarkovEncoder
from pyrovae.infer import fit, log_marginal
from pyrovae.models import DeepMarkovModel

D, L = 3, 2


def sequences(n: int = 5, t: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, t, D, generator=g) > 0.6).float()
    return x, torch.tensor([t, 1, 3, t - 1, 2][:n])


def pair() -> tuple[DeepMarkovModel, MarkovEncoder]:
    torch.manual_seed(1)
    return DeepMarkovModel(D, L, 16, (16,)), MarkovEncoder(D, L, 16)


class TestDeepMarkovModelContract(PairContract):
    def make_pair(self, variant=None) -> Pair:
        model, guide = pair()
        return Pair(model, guide, sequences())


def site_log_probs(program, x, lengths, values: dict) -> dict[str, torch.Tensor]:
    """log density (N,) of every sample site of ``program`` with its latents set to values."""
    trace = poutine.trace(poutine.condition(program, values)).get_trace(x, lengths)
    trace.compute_log_prob()
    return {
        name: site["log_prob"]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and (name[:2] == "z_" or name == "x")
    }


def guide_steps(guide, x, lengths, values: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mean, scale) of q(z_t | z_{t-1}, x) for t = 1..T, with every z_t set to values."""
    trace = poutine.trace(poutine.condition(guide, values)).get_trace(x, lengths)
    sites = [trace.nodes[f"z_{t + 1}"]["fn"] for t in range(x.shape[1])]
    return [(fn.mean, fn.variance.sqrt()) for fn in sites]


@pytest.mark.parametrize("rnn", ["gru", "rnn"])
def test_the_guide_reads_each_sequence_from_step_t_to_its_end(rnn):
    """q(z_t | z_{t-1}, x_{t:T}): with the z's held fixed, changing x at step s changes the
    guide's q(z_t) at every t <= s and leaves every t > s exactly as it was."""
    torch.manual_seed(1)
    guide = MarkovEncoder(D, L, 16, rnn=rnn)
    x, _ = sequences(n=3, t=6)
    values = {f"z_{t + 1}": torch.randn(3, L) for t in range(6)}
    with torch.no_grad():
        before = guide_steps(guide, x, None, values)
        for s in (0, 3, 5):
            changed = x.clone()
            changed[:, s] = 1 - changed[:, s]
            after = guide_steps(guide, changed, None, values)
            pairs = zip(before, after, strict=True)
            for t, ((loc, scale), (new_loc, new_scale)) in enumerate(pairs):
                if t > s:
                    assert torch.equal(new_loc, loc) and torch.equal(new_scale, scale), (s, t)
                else:
                    assert (new_loc - loc).abs().amax(-1).min() > 1e-6, (s, t)


@pytest.mark.parametrize("rnn", ["gru", "rnn"])
def test_a_padded_batch_has_the_numbers_of_its_unpadded_sequences(rnn):
    model, _ = pair()
    guide = MarkovEncoder(D, L, 16, rnn=rnn)
    x, lengths = sequences()
    values = {f"z_{t + 1}": torch.randn(len(x), L) for t in range(x.shape[1])}
    with torch.no_grad():
        for program in (model, guide):
            batch = site_log_probs(program, x, lengths, values)
            # Every documented site is compared: the model's emission is the one site "x".
            assert set(batch) == set(values) | ({"x"} if program is model else set())
            for n, t in enumerate(lengths.tolist()):
                alone = site_log_probs(
                    program, x[n : n + 1, :t], None, {k: v[n : n + 1] for k, v in values.items()}
                )
                for name, lp in batch.items():
                    step = 1 if name == "x" else int(name.split("_")[1])  # x: all real steps
                    expected = float(alone[name]) if step <= t else 0.0  # padding: no term
                    assert float(lp[n]) == pytest.approx(expected, abs=1e-5), (program, name)


def kalman_log_likelihood(x, length, z0, a, b, s, c, d, noise) -> float:
    """log p(x_1..x_T) of z_t = a z_{t-1} + b + s eps_t (scalar state, from z_0),
    x_t = c z_t + d + N(0, diag noise), by the Kalman filter's predictive densities."""
    mean, var = a * z0 + b, s**2  # p(z_1)
    total = 0.0
    for t in range(length):
        predictive = torch.distributions.MultivariateNormal(
            c * mean + d, var * torch.outer(c, c) + torch.diag(noise)
        )
        total += float(predictive.log_prob(x[t]))
        cov = var * torch.outer(c, c) + torch.diag(noise)
        gain = var * torch.linalg.solve(cov, c)  # (D,)
        mean = mean + gain @ (x[t] - c * mean - d)
        var = var - var * gain @ c
        mean, var = a * mean + b, a**2 * var + s**2  # predict z_{t+1}
    return total


def test_the_linear_gaussian_case_matches_a_kalman_filter():
    """Gate shut (the transition is its linear part), a constant scale, a linear emission and
    Gaussian noise: the DMM is a linear-Gaussian state-space model, whose log p(x) the Kalman
    filter gives exactly. Importance sampling from the prior converges to it."""
    torch.manual_seed(3)
    model = DeepMarkovModel(2, 1, 8, (), likelihood="gaussian").double()
    with torch.no_grad():
        model.transition.gate[-1].weight.zero_()
        model.transition.gate[-1].bias.fill_(-50.0)  # sigmoid(-50) = 0: no gate
        model.transition.linear.weight.fill_(0.8)
        model.transition.linear.bias.fill_(0.3)
        model.transition.scale.weight.zero_()
        model.transition.scale.bias.fill_(math.log(math.e - 1))  # softplus = 1
        model.z_0.fill_(0.5)
    a, b, s = 0.8, 0.3, 1.0 + 1e-4
    c, d = model.emitter[0].weight[:, 0].detach(), model.emitter[0].bias.detach()
    noise = (torch.nn.functional.softplus(model.likelihood.raw_scale) + 0.01).detach() ** 2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    lengths = torch.tensor([3, 1, 2, 3])
    exact = torch.tensor(
        [kalman_log_likelihood(x[n], int(t), 0.5, a, b, s, c, d, noise) for n, t in
         enumerate(lengths)], dtype=torch.float64)  # fmt: skip
    guide = MarkovEncoder(2, 1, 8).double()
    pyro.set_rng_seed(0)
    with torch.no_grad():
        result = log_marginal(
            model, guide, (x, lengths), num_samples=20000, proposal="prior", progress=False
        )
    assert torch.all((result.log_likelihood - exact).abs() <= 5 * result.stderr + 1e-6), (
        result.log_likelihood,
        exact,
        result.stderr,
    )


def test_fit_lowers_the_loss_and_the_prior_generates_sequences():
    x, lengths = sequences(5, 6)
    x, lengths = x.repeat(8, 1, 1), lengths.repeat(8)
    model, guide = pair()
    history = fit(model, guide, (x, lengths), epochs=6, batch_size=20, lr=1e-2, seed=0,
                  progress=False)  # fmt: skip
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    drawn = model.generate(3, 8)
    assert drawn.shape == (3, 8, D) and set(drawn.unique().tolist()) <= {0.0, 1.0}


def test_the_guide_takes_a_gru_or_an_elman_relu_rnn_and_refuses_others_by_name():
    assert isinstance(MarkovEncoder(3, 2, 4).rnn, torch.nn.GRU)
    rnn = MarkovEncoder(3, 2, 4, rnn="rnn").rnn
    assert isinstance(rnn, torch.nn.RNN) and rnn.nonlinearity == "relu"
    with pytest.raises(ValueError, match="'gru' or 'rnn', got 'lstm'"):
        MarkovEncoder(3, 2, 4, rnn="lstm")
