"""Pyro programs written as Pyro's own examples and tutorials write them, each against an
exact answer: a forward algorithm, a closed form, a conjugate posterior, or Pyro's own
``TraceEnum_ELBO``. One test per idiom: masks around enumerated sites, subsampled and scaled
plates, point-mass guides, global latents on minibatches, sequential plates, plain indexing
that cannot take a particle dimension, data plates named as the user likes, discrete
latents Pyro cannot learn without a guide, and plates entered in opposite orders."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoDelta
from pyro.nn import PyroModule, PyroParam

from pyrovae import fit, log_marginal
from pyrovae.infer import Trainer, assign, evaluate_elbo
from pyrovae.infer.passes import log_importance_weights
from pyrovae.infer.program import check_program

PARALLEL = {"enumerate": "parallel"}


def empty_guide(*args):
    pass


# --- an HMM as Pyro's examples/hmm.py writes it: lengths masked, plain indexing -------------

K, TONES = 3, 4
PROBS_X = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=torch.float64)
PROBS_Y = torch.tensor(
    [[0.9, 0.1, 0.5, 0.2], [0.2, 0.7, 0.4, 0.9], [0.5, 0.5, 0.1, 0.6]], dtype=torch.float64
)


def hmm(sequences, lengths, probs_x=PROBS_X, probs_y=PROBS_Y):
    """Pyro's model_1: a data plate "sequences" at dim -2, a "tones" plate at dim -1, the
    steps past each length masked, the states indexed with plain ``probs_x[x]``."""
    num_sequences, max_length, data_dim = sequences.shape
    tones_plate = pyro.plate("tones", data_dim, dim=-1)
    with pyro.plate("sequences", num_sequences, dim=-2) as batch:
        lengths = lengths[batch]
        x = 0
        for t in pyro.markov(range(max_length)):
            with poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]), infer=PARALLEL)
                with tones_plate:
                    pyro.sample(
                        f"y_{t}", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=sequences[batch, t]
                    )


def forward_algorithm(y, length, probs_x=PROBS_X, probs_y=PROBS_Y):
    """log p(y_{0:length}) of one sequence, by the forward recursion (steps past the length
    are not part of the sequence)."""
    alpha = torch.zeros(K, dtype=torch.float64)  # log p(state before the first step = 0)
    alpha = torch.log(torch.nn.functional.one_hot(torch.tensor(0), K).double())
    for t in range(length):
        emission = dist.Bernoulli(probs_y).log_prob(y[t]).sum(-1)  # (K,)
        alpha = torch.logsumexp(alpha[:, None] + probs_x.log(), 0) + emission
    return torch.logsumexp(alpha, 0)


def tone_data(seed=0, sequences=5, steps=6):
    generator = torch.Generator().manual_seed(seed)
    y = torch.bernoulli(torch.full((sequences, steps, TONES), 0.5), generator=generator)
    lengths = torch.tensor([6, 2, 4, 1, 5])[:sequences]
    y = y.double() * (torch.arange(steps)[:, None] < lengths[:, None, None])  # zero padding
    return y, lengths


def test_a_masked_enumerated_hmm_gives_the_forward_algorithm_per_sequence():
    y, lengths = tone_data()
    result = log_marginal(hmm, empty_guide, (y, lengths), num_samples=2, progress=False)
    expected = torch.stack([forward_algorithm(y[i], int(lengths[i])) for i in range(len(y))])
    torch.testing.assert_close(result.log_likelihood, expected, rtol=1e-10, atol=1e-10)
    # ... and their sum is Pyro's own TraceEnum_ELBO with an empty guide.
    pyro_total = -TraceEnum_ELBO(max_plate_nesting=2).loss(hmm, empty_guide, y, lengths)
    assert math.isclose(float(result.log_likelihood.sum()), pyro_total, rel_tol=1e-10)
    assert float(result.stderr.max()) == 0.0  # every latent summed: nothing sampled


def viterbi(y, length, steps, probs_x=PROBS_X, probs_y=PROBS_Y):
    """The MAP path of one sequence over all ``steps`` (emissions only before its length)."""
    score = torch.log(torch.nn.functional.one_hot(torch.tensor(0), K).double())
    back = []
    for t in range(steps):
        candidates = score[:, None] + probs_x.log()  # (previous, next)
        back.append(candidates.argmax(0))
        score = candidates.max(0).values
        if t < length:
            score = score + dist.Bernoulli(probs_y).log_prob(y[t]).sum(-1)
    path = [int(score.argmax())]
    for pointers in reversed(back[1:]):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


def test_assign_gives_the_viterbi_path_of_a_masked_hmm_in_its_own_data_plate():
    """Pyro's infer_discrete masks every factor of a masked step, the states' own included,
    so a sequence's path is its Viterbi path over its own steps; past its length the states
    carry no information (Pyro gives them ties)."""
    y, lengths = tone_data()
    paths = assign(hmm, empty_guide, (y, lengths))
    for i in range(len(y)):
        length = int(lengths[i])
        expected = viterbi(y[i], length, length)
        assert [int(paths[f"x_{t}"][i]) for t in range(length)] == expected


def hmm_with_priors(sequences, lengths):
    """Pyro's model_1 with its global priors, the guide an AutoDelta over them."""
    probs_x = pyro.sample(
        "probs_x", dist.Dirichlet(0.9 * torch.eye(K, dtype=torch.float64) + 0.1).to_event(1)
    )
    probs_y = pyro.sample(
        "probs_y",
        dist.Beta(torch.tensor(0.1, dtype=torch.float64), 0.9).expand([K, TONES]).to_event(2),
    )
    hmm(sequences, lengths, probs_x, probs_y)


def test_pyros_hmm_example_trains_with_autodelta_globals_and_plain_indexing():
    y, lengths = tone_data()
    guide = AutoDelta(
        poutine.block(hmm_with_priors, expose_fn=lambda msg: msg["name"].startswith("probs_"))
    )
    trainer = Trainer(hmm_with_priors, guide, (y, lengths), batch_size=5, progress=False)
    assert trainer.program.data_plate == "sequences"
    # The training loss is Pyro's own TraceEnum_ELBO (the whole data in one batch: no scale).
    reference = TraceEnum_ELBO(max_plate_nesting=2).differentiable_loss(
        hmm_with_priors, guide, y, lengths
    )
    torch.testing.assert_close(trainer.loss(y, lengths), reference, rtol=1e-10, atol=1e-10)
    trainer.run(3)
    assert all(math.isfinite(r["train_elbo"]) for r in trainer.history)
    # The posterior predictive at the point estimate is the forward algorithm at it.
    point = guide.median(y, lengths)
    with pytest.warns(UserWarning, match="one at a time"):  # probs_x[x]: no particle dim
        result = log_marginal(hmm_with_priors, guide, (y, lengths), num_samples=3, progress=False)
    expected = torch.stack(
        [
            forward_algorithm(y[i], int(lengths[i]), point["probs_x"], point["probs_y"])
            for i in range(len(y))
        ]
    )
    assert result.estimand == "log posterior predictive"
    torch.testing.assert_close(result.log_likelihood, expected.detach(), rtol=1e-8, atol=1e-8)


# --- the Gaussian mixture tutorial as written ----------------------------------------------

TUTORIAL_DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])


@config_enumerate
def tutorial_gmm(data):
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(2)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def tutorial_guide():
    return AutoDelta(
        poutine.block(tutorial_gmm, expose=["weights", "locs", "scale"]),
        init_loc_fn=lambda site: {
            "weights": torch.ones(2) / 2,
            "scale": torch.tensor(1.0),
            "locs": torch.tensor([0.0, 10.0]),
        }[site["name"]],
    )


def test_the_gmm_tutorial_trains_and_its_predictive_density_is_exact():
    guide = tutorial_guide()
    trainer = Trainer(tutorial_gmm, guide, TUTORIAL_DATA, batch_size=5, lr=0.1, progress=False)
    reference = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
        tutorial_gmm, guide, TUTORIAL_DATA
    )
    torch.testing.assert_close(trainer.loss(TUTORIAL_DATA), reference)
    trainer.run(50)
    point = {k: v.detach() for k, v in guide.median(TUTORIAL_DATA).items()}
    with pytest.warns(UserWarning, match="one at a time"):  # locs[assignment]
        result = log_marginal(tutorial_gmm, guide, TUTORIAL_DATA, num_samples=4, progress=False)
    components = dist.Normal(point["locs"], point["scale"]).log_prob(TUTORIAL_DATA[:, None])
    expected = torch.logsumexp(point["weights"].log() + components, -1)
    torch.testing.assert_close(result.log_likelihood, expected.double(), rtol=1e-5, atol=1e-5)
    # Minibatches of that program run too (the globals then scaled as a subsample's).
    fit(tutorial_gmm, tutorial_guide(), TUTORIAL_DATA, epochs=2, batch_size=2, progress=False)


# --- masks on observations: obs_mask -------------------------------------------------------


def test_obs_mask_scores_only_the_observed_entries():
    x = torch.randn(4, 3, dtype=torch.float64)
    observed = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 0]], dtype=torch.bool)
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def model(x, observed):  # the mask is per example: a model argument, batched with x
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", 3, dim=-1):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x, obs_mask=observed)

    result = log_marginal(model, empty_guide, (x, observed), num_samples=3, progress=False)
    expected = (dist.Normal(loc, 1.0).log_prob(x) * observed).sum(-1)
    torch.testing.assert_close(result.log_likelihood, expected)


# --- scales are training devices: subsampled plates and poutine.scale -----------------------

PROBS = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
LOCS = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
X = torch.tensor([-1.5, 0.3, 2.2, 4.0], dtype=torch.float64)


def mixture_density(x):
    return torch.logsumexp(PROBS.log() + dist.Normal(LOCS, 1.0).log_prob(x[:, None]), -1)


def subsampled_mixture(x):
    """The minibatch as a subsample of 1000 rows: every site scaled by 1000 / B."""
    with pyro.plate("data", 1000, subsample=torch.arange(x.shape[0])):
        c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
        pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)


def test_a_subsampled_plate_gives_per_example_numbers():
    result = log_marginal(subsampled_mixture, empty_guide, X, num_samples=2, progress=False)
    torch.testing.assert_close(result.log_likelihood, mixture_density(X), rtol=1e-12, atol=1e-12)


def linear_gaussian(x, scale=1.0):
    """z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2), p(z | x) = N(x / 2, 1 / 2)."""
    with pyro.plate("data", x.shape[0]), poutine.scale(scale=scale):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def exact_posterior(x, scale=1.0):
    with pyro.plate("data", x.shape[0]), poutine.scale(scale=scale):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


@pytest.mark.parametrize("scale", [1.0, 0.1, 25.0])
def test_poutine_scale_leaves_log_p_x_and_the_test_elbo_per_example(scale):
    expected = dist.Normal(torch.tensor(0.0, dtype=torch.float64), math.sqrt(2.0)).log_prob(X)
    result = log_marginal(
        lambda x: linear_gaussian(x, scale),
        lambda x: exact_posterior(x, scale),
        X,
        num_samples=5,
        progress=False,
    )
    torch.testing.assert_close(result.log_likelihood, expected, rtol=1e-12, atol=1e-12)
    # With q the exact posterior the ELBO is log p(x) at every draw.
    elbo = evaluate_elbo(
        lambda x: linear_gaussian(x, scale), lambda x: exact_posterior(x, scale), X
    )
    assert math.isclose(elbo, float(expected.mean()), rel_tol=1e-6)


# --- point-mass guides --------------------------------------------------------------------


def delta_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(x / 2))


def test_a_point_mass_guide_for_a_local_latent_is_refused():
    with pytest.raises(ValueError, match=r"'z' from a point mass .* does not estimate log p\(x\)"):
        log_marginal(linear_gaussian, delta_guide, X, num_samples=4, progress=False)
    auto = AutoDelta(linear_gaussian)  # its point per row: one batch of the 4 rows
    auto(X)
    with pytest.raises(ValueError, match="'z' from a point mass"):
        log_marginal(linear_gaussian, auto, X, num_samples=4, batch_size=4, progress=False)


# --- a global latent trained on minibatches -----------------------------------------------


class ConjugateMean(PyroModule):
    """mu ~ N(0, 1), x_n ~ N(mu, 1): the posterior is N(sum x / (N + 1), 1 / (N + 1))."""

    def forward(self, x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


class MeanGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.0))
        self.scale = PyroParam(torch.tensor(0.5), constraint=dist.constraints.positive)

    def forward(self, x):
        pyro.sample("mu", dist.Normal(self.loc, self.scale))


ROWS = torch.randn(1000, generator=torch.Generator().manual_seed(3)) + 0.7


def test_a_minibatch_step_is_pyros_subsample_idiom():
    """The Trainer's loss on a batch of B of the N rows equals Trace_ELBO of the program
    written with pyro.plate("data", N, subsample=...) (Pyro scales it by N / B), divided by
    N / B (the step's loss is per batch row)."""
    model, guide = ConjugateMean(), MeanGuide()
    trainer = Trainer(model, guide, ROWS, batch_size=100, objective="meanfield", progress=False)
    batch = ROWS[:100]

    def idiom_model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", 1000, subsample=torch.arange(100)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    pyro.set_rng_seed(1)
    ours = trainer.loss(batch)
    pyro.set_rng_seed(1)
    pyros = pyro.infer.TraceMeanField_ELBO().differentiable_loss(idiom_model, guide, batch)
    torch.testing.assert_close(ours, pyros)


@pytest.mark.parametrize("batch_size", [100, 250, 1000])
def test_a_global_latent_on_minibatches_finds_the_conjugate_posterior(batch_size, one_thread):
    model, guide = ConjugateMean(), MeanGuide()
    steps = 3000
    epochs = steps * batch_size // ROWS.shape[0]
    decay = (1e-3 / 0.05) ** (1 / epochs)  # the learning rate from 0.05 to 1e-3

    def anneal(trainer):
        for group in trainer.optimizer.param_groups:
            group["lr"] *= decay

    fit(
        model,
        guide,
        ROWS,
        epochs=epochs,
        batch_size=batch_size,
        objective="meanfield",
        # beta2 0.99: a shorter memory of the early, noisy gradients of the scale.
        optimizer=lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.99)),
        callbacks=[anneal],
        seed=0,
        progress=False,
    )
    n = ROWS.shape[0]
    posterior_mean, posterior_sd = float(ROWS.sum()) / (n + 1), 1 / math.sqrt(n + 1)
    # The mean to half a posterior sd, the sd to 10% (it was 0.098, three times too wide,
    # when the prior counted in full on every minibatch).
    assert abs(float(guide.loc.detach()) - posterior_mean) < 0.5 * posterior_sd
    assert abs(float(guide.scale.detach()) - posterior_sd) < 0.1 * posterior_sd


# --- a sequential data plate ------------------------------------------------------------------


def sequential_model(x):
    for i in pyro.plate("data", x.shape[0]):
        z = pyro.sample(f"z_{i}", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])


def sequential_guide(x):
    for i in pyro.plate("data", x.shape[0]):
        pyro.sample(f"z_{i}", dist.Normal(x[i] / 2, math.sqrt(0.5)))


def test_a_sequential_plate_gives_each_example_its_own_number():
    result = log_marginal(sequential_model, sequential_guide, X, num_samples=3, progress=False)
    expected = dist.Normal(torch.tensor(0.0, dtype=torch.float64), math.sqrt(2.0)).log_prob(X)
    torch.testing.assert_close(result.log_likelihood, expected, rtol=1e-12, atol=1e-12)


def test_a_sequential_plate_around_an_enumerated_site_is_refused():
    def model(x):
        for i in pyro.plate("data", x.shape[0]):
            c = pyro.sample(f"c_{i}", dist.Categorical(PROBS), infer=PARALLEL)
            pyro.sample(f"x_{i}", dist.Normal(LOCS[c], 1.0), obs=x[i])

    with pytest.raises(ValueError, match="sequential .* enumerates"):
        log_marginal(model, empty_guide, X, num_samples=2, progress=False)


# --- the data plate: found, or named ----------------------------------------------------------


def two_plates(x):
    """Two plates of the batch's size around the observation: which holds the examples?"""
    with pyro.plate("rows", x.shape[0], dim=-2), pyro.plate("columns", x.shape[1], dim=-1):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def test_of_two_plates_of_the_batchs_size_the_one_over_the_rows_is_found_or_named():
    """x (2, 2): "rows" and "columns" both have the batch's size, but only "rows" shrinks
    with the batch (minibatches are rows), so it is the data plate; ``data_plate`` or the
    model's attribute names either."""
    x = torch.randn(2, 2, dtype=torch.float64)
    found = log_marginal(two_plates, empty_guide, x, num_samples=2, progress=False)
    torch.testing.assert_close(found.log_likelihood, dist.Normal(0.0, 1.0).log_prob(x).sum(-1))
    assert check_program(two_plates, empty_guide, (x,)).data_plate == "rows"
    for plate, axis in (("rows", -1), ("columns", 0)):
        result = log_marginal(
            two_plates, empty_guide, x, num_samples=2, progress=False, data_plate=plate
        )
        expected = dist.Normal(0.0, 1.0).log_prob(x).sum(axis)
        torch.testing.assert_close(result.log_likelihood, expected)

    # A model names it with an attribute (how a CLI factory's model says it), and fit reads it.
    def named(x):
        two_plates(x)

    named.data_plate = "columns"
    result = log_marginal(named, empty_guide, x, num_samples=2, progress=False)
    torch.testing.assert_close(result.log_likelihood, dist.Normal(0.0, 1.0).log_prob(x).sum(0))
    assert check_program(named, empty_guide, (x,)).data_plate == "columns"


# --- a discrete latent Pyro cannot learn without a guide ----------------------------------


class PoissonCounts(PyroModule):
    def __init__(self):
        super().__init__()
        self.rate = PyroParam(torch.tensor(1.0), constraint=dist.constraints.positive)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Poisson(self.rate))
            pyro.sample("x", dist.Normal(k, 0.5), obs=x)


def test_a_latent_that_can_be_neither_enumerated_nor_reparameterised_is_refused():
    model = PoissonCounts()
    with pytest.raises(
        ValueError, match="samples 'k' .*Sample it in the guide.*make it enumerable"
    ):
        fit(model, empty_guide, torch.tensor([2.0, 3.0, 4.0]), epochs=1, progress=False)


# --- model and guide entering the same plates in opposite orders ------------------------------

D = 3


def crossed_model(x):
    with pyro.plate("data", x.shape[0], dim=-2):
        c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
        with pyro.plate("features", D, dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z + LOCS[c], 1.0), obs=x)


def guide_data_first(x):
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", D, dim=-1):
        pyro.sample("z", dist.Normal(x / 2, 0.8))


def guide_features_first(x):
    with pyro.plate("features", D, dim=-1), pyro.plate("data", x.shape[0], dim=-2):
        pyro.sample("z", dist.Normal(x / 2, 0.8))


def test_plates_entered_in_either_order_give_the_same_per_example_weights():
    x = torch.randn(4, D, dtype=torch.float64)
    pyro.set_rng_seed(5)
    first = log_importance_weights(crossed_model, guide_data_first, (x,), 3)
    pyro.set_rng_seed(5)
    second = log_importance_weights(crossed_model, guide_features_first, (x,), 3)
    torch.testing.assert_close(first, second, rtol=1e-12, atol=1e-12)
    assert first.shape == (4, 3)
    assert len({round(float(v), 6) for v in first[:, 0]}) == 4  # each row its own


# --- programs that cannot take a particle dimension -------------------------------------------


def test_a_program_that_breaks_in_a_particle_plate_runs_its_particles_one_at_a_time():
    def model(x):
        loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(torch.ones(2) / 2), infer=PARALLEL)
            pyro.sample("x", dist.Normal(loc[c], 1.0), obs=x)  # loc[c]: no particle dim

    def guide(x):
        pyro.sample("loc", dist.Normal(torch.tensor([-1.0, 1.0]), 0.1).to_event(1))

    x = torch.tensor([-1.2, 0.9, 1.1])
    with pytest.warns(UserWarning, match="one at a time"):
        result = log_marginal(model, guide, x, num_samples=6, progress=False)
    assert result.log_likelihood.shape == (3,)
    assert torch.isfinite(result.log_likelihood).all()

    # fit: one particle runs as Pyro's ELBOs run it; three run one after another, said so.
    class Guide(PyroModule):
        def __init__(self):
            super().__init__()
            self.center = PyroParam(torch.tensor([-1.0, 1.0]))

        def forward(self, x):
            pyro.sample("loc", dist.Normal(self.center, 0.1).to_event(1))

    fit(model, Guide(), x, epochs=2, progress=False)
    with pytest.warns(UserWarning, match="one at a time"):
        trainer = Trainer(model, Guide(), x, num_particles=3, progress=False)
    assert trainer.elbo.num_particles == 3 and not trainer.elbo.vectorize_particles
    trainer.run(2)

    def reshaping_model(x):  # z.reshape(x.shape): no room for a particle dim
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z.reshape(x.shape), 1.0), obs=x)

    class LocalGuide(PyroModule):
        def __init__(self):
            super().__init__()
            self.shift = PyroParam(torch.tensor(0.0))

        def forward(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(x / 2 + self.shift, 0.7))

    with pytest.raises(ValueError, match="cannot run in one"):
        Trainer(reshaping_model, LocalGuide(), x, num_particles=3, objective="iwae", progress=False)
    # Each particle's weight is that of the program run alone: the mixture at its own loc.
    pyro.set_rng_seed(2)
    alone = log_marginal(model, guide, x, num_samples=1, progress=False).log_likelihood
    assert torch.isfinite(alone).all()


def test_a_program_that_runs_in_a_particle_plate_but_mixes_its_particles_runs_them_alone():
    """``z.reshape(-1)[:N]`` runs in a particle plate without an error, but scores every
    particle's x against particle 0's z: the check compares each particle's weight with the
    program run alone and sends the particles one at a time. With the exact posterior as the
    guide every correct weight equals log p(x), so the estimate is exact (vectorized, the
    particles' weights would mix p(x | z_0) with q(z_p) and vary)."""
    s = 0.5

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z.reshape(-1)[: x.shape[0]], s), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / (1 + s**2), (s**2 / (1 + s**2)) ** 0.5))

    x = torch.tensor([-1.2, 0.3, 2.0], dtype=torch.float64)
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match="one at a time"):
        result = log_marginal(model, guide, x, num_samples=8, progress=False)
    exact = dist.Normal(0.0, (1 + s**2) ** 0.5).log_prob(x)
    torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=1e-6)
