"""Enumerated sites summed exactly, for every structure TraceEnum_ELBO accepts.

Each class below is one structure with its log p(x) computed by hand (the forward
algorithm, sums over a mixture's components inside products over plates); every one is a
pair of :class:`contract.PairContract`, with its oracle as ``Pair.exact``.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from contract import Pair, PairContract
from pyro.ops.indexing import Vindex
from torch import nn

from pyrovae import log_marginal
from pyrovae.infer import log_importance_weights
from pyrovae.infer.program import check_program
from pyrovae.module import LocalPyroModule

PARALLEL = {"enumerate": "parallel"}


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)


def empty_guide(*args):
    pass


def random_probs(*shape):
    return torch.softmax(torch.randn(*shape), -1)


def forward_algorithm(init, trans, emission_log_prob):
    """log p(x_1..T) of an HMM: init (S,), trans (S, S), emission_log_prob (N, T, S)."""
    alpha = init.log() + emission_log_prob[:, 0]
    for t in range(1, emission_log_prob.shape[1]):
        alpha = torch.logsumexp(alpha[:, :, None] + trans.log(), 1) + emission_log_prob[:, t]
    return torch.logsumexp(alpha, -1)


class HMM(LocalPyroModule):
    """A user's hidden Markov model with learnt parameters: p(s_0) = init, p(s_t | s_{t-1})
    = trans, x_t | s_t ~ N(locs[s_t], 1); the states enumerated under pyro.markov (recycled
    dims), so its guide samples nothing."""

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.init_logits = nn.Parameter(torch.randn(num_states))
        self.trans_logits = nn.Parameter(torch.randn(num_states, num_states))
        self.locs = nn.Parameter(2 * torch.randn(num_states))

    def forward(self, x):
        init, trans = self.init_logits.softmax(-1), self.trans_logits.softmax(-1)
        with pyro.plate("data", x.shape[0]):
            s = pyro.sample("s_0", dist.Categorical(init), infer=PARALLEL)
            pyro.sample("x_0", dist.Normal(self.locs[s], 1.0), obs=x[:, 0])
            for t in pyro.markov(range(1, x.shape[1])):
                s = pyro.sample(f"s_{t}", dist.Categorical(trans[s]), infer=PARALLEL)
                pyro.sample(f"x_{t}", dist.Normal(self.locs[s], 1.0), obs=x[:, t])


class TestMarkovChain(PairContract):
    """The HMM against the forward algorithm."""

    def make_pair(self):
        S, T, N = 3, 6, 5
        model, x = HMM(S), torch.randn(N, T)
        with torch.no_grad():
            init, trans = model.init_logits.softmax(-1), model.trans_logits.softmax(-1)
            emissions = dist.Normal(model.locs, 1.0).log_prob(x[..., None])  # (N, T, S)
            exact = forward_algorithm(init, trans, emissions)
        return Pair(model, empty_guide, (x,), "enum", exact)


class TestSecondOrderMarkovChain(PairContract):
    """pyro.markov(history=2): each state depends on the two before it."""

    def make_pair(self):
        S, T, N = 2, 5, 4
        init, locs = random_probs(S), 2 * torch.randn(S)
        trans2 = random_probs(S, S, S)  # p(s_t | s_{t-2}, s_{t-1})
        x = torch.randn(N, T)

        def model(x):
            with pyro.plate("data", x.shape[0]):
                states = []
                for t in pyro.markov(range(x.shape[1]), history=2):
                    if t < 2:
                        probs = init
                    else:
                        probs = Vindex(trans2)[states[t - 2], states[t - 1]]
                    s = pyro.sample(f"s_{t}", dist.Categorical(probs), infer=PARALLEL)
                    states.append(s)
                    pyro.sample(f"x_{t}", dist.Normal(locs[s], 1.0), obs=x[:, t])

        emissions = dist.Normal(locs, 1.0).log_prob(x[..., None])  # (N, T, S)
        # Brute force over the S**T paths.
        paths = torch.cartesian_prod(*[torch.arange(S)] * T)  # (S**T, T)
        lp = init.log()[paths[:, 0]] + init.log()[paths[:, 1]]
        for t in range(2, T):
            lp = lp + trans2.log()[paths[:, t - 2], paths[:, t - 1], paths[:, t]]
        emit = emissions[:, torch.arange(T), paths].sum(-1)  # (N, S**T)
        return Pair(model, empty_guide, (x,), "enum", torch.logsumexp(lp + emit, -1))


class TestObservationsInAnInnerPlate(PairContract):
    """A mixture whose component c is enumerated per example, observations in a plate
    inside the data plate: the product over dims comes before the sum over c."""

    def make_pair(self):
        K, D, N = 3, 4, 5
        weights, mu = random_probs(K), torch.randn(K, D)
        x = torch.randn(N, D)

        def model(x):
            with pyro.plate("data", x.shape[0], dim=-2):
                c = pyro.sample("c", dist.Categorical(weights), infer=PARALLEL)
                with pyro.plate("dims", D, dim=-1):
                    pyro.sample("x", dist.Normal(Vindex(mu)[c, torch.arange(D)], 1.0), obs=x)

        per_component = dist.Normal(mu, 1.0).log_prob(x[:, None]).sum(-1)  # (N, K)
        exact = torch.logsumexp(weights.log() + per_component, -1)
        return Pair(model, empty_guide, (x,), "enum", exact)


class TestNestedPlatesWithSeveralEnumeratedSites(PairContract):
    """c per example, d per group given c, observations per group member: three plates
    deep, two enumerated sites in different plates."""

    def make_pair(self):
        C, Dv, G, J, N = 2, 3, 3, 2, 4
        pc, pd = random_probs(C), random_probs(C, Dv)
        means = 2 * torch.randn(C, Dv)
        x = torch.randn(N, G, J)

        def model(x):
            with pyro.plate("data", x.shape[0], dim=-3):
                c = pyro.sample("c", dist.Categorical(pc), infer=PARALLEL)
                with pyro.plate("groups", G, dim=-2):
                    d = pyro.sample("d", dist.Categorical(Vindex(pd)[c]), infer=PARALLEL)
                    with pyro.plate("members", J, dim=-1):
                        pyro.sample("x", dist.Normal(Vindex(means)[c, d], 1.0), obs=x)

        # log p(x_n) = logsumexp_c [log pc + sum_g logsumexp_d (log pd + sum_j log N)]
        obs = dist.Normal(means, 1.0).log_prob(x[:, :, :, None, None]).sum(2)  # (N, G, C, D)
        per_group = torch.logsumexp(pd.log() + obs, -1)  # (N, G, C)
        exact = torch.logsumexp(pc.log() + per_group.sum(1), -1)
        return Pair(model, empty_guide, (x,), "enum", exact)


class TestEnumeratedWithReparameterisedLatents(PairContract):
    """A mixture prior on a continuous z (c enumerated in the model, z from the guide):
    with the guide equal to the exact posterior p(z | x), a mixture, every weight is p(x)."""

    def make_pair(self):
        K, N, s = 3, 6, 0.5
        weights, mu = random_probs(K), 3 * torch.randn(K)
        x = 3 * torch.randn(N)

        def model(x):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample("c", dist.Categorical(weights), infer=PARALLEL)
                z = pyro.sample("z", dist.Normal(mu[c], 1.0))
                pyro.sample("x", dist.Normal(z, s), obs=x)

        # p(x | c) = N(mu_c, 1 + s^2); p(z | x, c) = N((mu_c s^2 + x) / (1 + s^2), s^2/(1+s^2))
        def marginal(x):  # log p(x | c) = log N(x; mu_c, 1 + s^2): (N, K)
            return dist.Normal(mu, math.sqrt(1 + s**2)).log_prob(x[:, None])

        post_sd = math.sqrt(s**2 / (1 + s**2))

        def guide(x):
            post_c = torch.softmax(weights.log() + marginal(x), -1)
            post_mean = (mu * s**2 + x[:, None]) / (1 + s**2)
            with pyro.plate("data", x.shape[0]):
                posterior = dist.MixtureSameFamily(
                    dist.Categorical(post_c), dist.Normal(post_mean, post_sd)
                )
                pyro.sample("z", posterior)

        exact = torch.logsumexp(weights.log() + marginal(x), -1)
        return Pair(model, guide, (x,), "enum", exact)


class TestEnumeratedInTheGuide(PairContract):
    """The semi-supervised VAE's structure: y enumerated by the guide, z | x, y drawn from
    it; with q(y | x) and q(z | x, y) exact every weight is p(x)."""

    def make_pair(self):
        K, N, s = 3, 6, 0.7
        weights, mu = random_probs(K), 3 * torch.randn(K)
        x = 3 * torch.randn(N)

        def model(x):
            with pyro.plate("data", x.shape[0]):
                y = pyro.sample("y", dist.Categorical(weights))
                z = pyro.sample("z", dist.Normal(mu[y], 1.0))
                pyro.sample("x", dist.Normal(z, s), obs=x)

        def marginal(x):  # log p(x | y): (N, K)
            return dist.Normal(mu, math.sqrt(1 + s**2)).log_prob(x[:, None])

        exact = torch.logsumexp(weights.log() + marginal(x), -1)
        post_sd = math.sqrt(s**2 / (1 + s**2))

        def guide(x):
            post_y = torch.softmax(weights.log() + marginal(x), -1)
            with pyro.plate("data", x.shape[0]):
                y = pyro.sample("y", dist.Categorical(post_y), infer=PARALLEL)
                pyro.sample("z", dist.Normal((mu[y] * s**2 + x) / (1 + s**2), post_sd))

        return Pair(model, guide, (x,), "enum", exact)


class TestUnmarkedDiscreteLatent(PairContract):
    """A discrete latent the guide leaves to the model, without an enumerate mark: summed
    (as TraceEnum_ELBO would sum it if marked), never drawn from its prior."""

    def make_pair(self):
        K, N = 4, 5
        weights, mu = random_probs(K), 2 * torch.randn(K)
        x = 2 * torch.randn(N)

        def model(x):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample("c", dist.Categorical(weights))
                pyro.sample("x", dist.Normal(mu[c], 1.0), obs=x)

        marginal = dist.Normal(mu, 1.0).log_prob(x[:, None])
        exact = torch.logsumexp(weights.log() + marginal, -1)
        return Pair(model, empty_guide, (x,), "enum", exact)

    def test_objective_is_read_from_the_program(self, variant):
        super().test_objective_is_read_from_the_program(variant)
        pair = self.make_pair()
        assert check_program(pair.model, pair.guide, pair.args).unmarked_discrete == ["c"]


def test_the_prior_proposal_sums_enumerated_sites_too():
    pair = TestMarkovChain().make_pair()
    model, guide, x = pair.model, pair.guide, pair.x
    result = log_marginal(model, guide, x, num_samples=3, proposal="prior", progress=False)
    torch.testing.assert_close(result.log_likelihood, pair.exact, rtol=0, atol=1e-8)


def test_factors_in_an_inner_plate_are_summed_per_example_without_enumeration():
    """No enumerated site, observations in an inner plate beside a per-example latent:
    each factor is summed over its own plates, not broadcast against the others."""
    D, N = 4, 3
    x = torch.randn(N, D)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("dims", D, dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(0.5, 2.0))

    pyro.set_rng_seed(3)
    lw = log_importance_weights(model, guide, (x,), 4)
    pyro.set_rng_seed(3)
    draws = poutine_draws(guide, x, 4)  # (4, N, 1) the same z
    expected = (
        dist.Normal(0.0, 1.0).log_prob(draws)[..., 0]
        + dist.Normal(draws, 1.0).log_prob(x).sum(-1)
        - dist.Normal(0.5, 2.0).log_prob(draws)[..., 0]
    ).T  # (N, 4)
    torch.testing.assert_close(lw, expected)


def poutine_draws(guide, x, particles):
    from pyro import poutine

    with pyro.plate("num_particles_vectorized", particles, dim=-3):
        trace = poutine.trace(guide).get_trace(x)
    return trace.nodes["z"]["value"].reshape(particles, x.shape[0], 1)


class TestRefusals:
    def test_sequential_enumeration_is_refused_by_name(self):
        def model(x):
            with pyro.plate("data", x.shape[0]):
                c = pyro.sample(
                    "c", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "sequential"}
                )
                pyro.sample("x", dist.Normal(c.double(), 1.0), obs=x)

        with pytest.raises(ValueError, match="'c' is marked for sequential enumeration"):
            log_marginal(model, empty_guide, torch.randn(3), num_samples=2, progress=False)

    def test_an_enumerated_global_site_is_refused(self):
        def model(x):
            c = pyro.sample("c", dist.Categorical(torch.ones(2) / 2), infer=PARALLEL)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", dist.Normal(c.double(), 1.0), obs=x)

        with pytest.raises(ValueError, match="'c' is enumerated outside pyro.plate"):
            log_marginal(model, empty_guide, torch.randn(3), num_samples=2, progress=False)

    def test_a_scale_is_left_out_of_log_p_x_and_refused_by_the_iwae_bound(self):
        from pyro import poutine

        from pyrovae.infer.iwae import IWAE_ELBO

        pair = TestUnmarkedDiscreteLatent().make_pair()
        scaled = poutine.scale(pair.model, 2.0)
        pyro.set_rng_seed(0)
        result = log_marginal(scaled, pair.guide, pair.x, num_samples=2, progress=False)
        pyro.set_rng_seed(0)
        plain = log_marginal(pair.model, pair.guide, pair.x, num_samples=2, progress=False)
        torch.testing.assert_close(result.log_likelihood, plain.log_likelihood)
        with pytest.raises(ValueError, match="is scaled"):
            IWAE_ELBO(2).differentiable_loss(scaled, pair.guide, pair.x)

    def test_an_observation_outside_the_data_plate_is_refused(self):
        def model(x):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1), obs=x)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(0.0, 1.0))

        with pytest.raises(ValueError, match="observes 'x' outside pyro.plate"):
            log_marginal(model, model, torch.randn(3), num_samples=2, progress=False)
