"""The per-example weights' edges, found by mutation testing (benchmarks/mutation.py): each
refusal with its whole message, masks and tensor scales in the weights, discrete latents left
unmarked under the prior proposal, and how many enumerated values a pass holds.

Oracles are exact (float64, sums over a mixture's components written out): with every latent
enumerated each importance weight *is* p(x_n), so no Monte Carlo tolerance is needed.
"""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae import log_marginal
from pyrovae.infer import IWAE_ELBO, assign, log_importance_weights
from pyrovae.infer.program import check_program
from pyrovae.infer.weights import enumerated_values, trace_pair

PARALLEL = {"enumerate": "parallel"}
PROBS = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
LOCS = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def empty_guide(*args):
    pass


def refused(message: str):
    """pytest.raises for a ValueError whose message is exactly ``message``."""
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def mixture_log_density(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log sum_c pi_c prod_p N(x_np; loc_c, 1)^mask_np for rows x (N, P): (N,)."""
    log_px = dist.Normal(LOCS, 1.0).log_prob(x.unsqueeze(-1))  # (N, P, C)
    if mask is not None:
        log_px = log_px * mask.unsqueeze(-1)
    return torch.logsumexp(PROBS.log() + log_px.sum(1), -1)


# ---- refusals, each with its whole message ------------------------------------------------


def test_sequential_enumeration_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PROBS), infer={"enumerate": "sequential"})
            pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)

    message = (
        "site 'c' is marked for sequential enumeration, which pyrovae cannot sum inside its "
        "vectorized importance weights; mark it infer={'enumerate': 'parallel'} instead"
    )
    with refused(message):
        log_marginal(model, empty_guide, torch.randn(3), num_samples=2, progress=False)


def test_a_guide_site_the_model_lacks_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 1.0))
            pyro.sample("u", dist.Normal(x.new_zeros(()), 1.0))

    message = (
        "the guide samples 'u', a site the model does not have: every guide site must be a "
        "latent site of the model (rename it to match, or remove it)"
    )
    with refused(message):
        log_marginal(model, guide, torch.randn(3), num_samples=2, progress=False)


def test_an_observation_outside_the_data_plate_is_refused():
    def model(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1), obs=x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    message = (
        "the model observes 'x' outside pyro.plate('data'): per-example log-likelihoods need "
        "every observation inside the data plate"
    )
    with refused(message):
        log_marginal(model, model, torch.randn(3), num_samples=2, progress=False)


def test_an_enumerated_global_site_is_refused():
    def model(x):
        c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)

    message = (
        "site 'c' is enumerated outside pyro.plate('data'): a discrete global latent couples "
        "all examples, so per-example log p(x) cannot sum it; move it inside the data plate or "
        "give the guide a distribution over it"
    )
    with refused(message):
        log_marginal(model, empty_guide, torch.randn(3), num_samples=2, progress=False)


def global_pair():
    """theta ~ N(0, 1) shared by all rows, x_n ~ N(theta, 1); q(theta) = N(0.3, 0.5)."""

    def model(x):
        theta = pyro.sample("theta", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(theta, 1.0), obs=x)

    def guide(x):
        pyro.sample("theta", dist.Normal(x.new_tensor(0.3), 0.5))

    return model, guide


def test_a_global_latent_under_the_prior_proposal_is_refused():
    model, guide = global_pair()
    message = (
        "site 'theta' is a global latent (outside pyro.plate('data')): proposal='prior' would "
        "estimate each example's p(x_n) alone, with its own draws of it; use proposal='guide' "
        "for the posterior predictive density"
    )
    with refused(message):
        log_marginal(model, guide, torch.randn(3), num_samples=2, proposal="prior", progress=False)


@pytest.mark.parametrize("dreg", [False, True])
def test_the_importance_weighted_bound_refuses_a_global_latent(dreg):
    model, guide = global_pair()
    message = (
        "site 'theta' is a global latent (outside pyro.plate('data')): the importance-weighted "
        "bound is a per-example bound on p(x_n | z) and cannot weigh a latent shared by all "
        "examples; train with the ELBO instead"
    )
    with refused(message):
        IWAE_ELBO(3, dreg=dreg).differentiable_loss(model, guide, torch.randn(3))


def test_a_model_that_observes_nothing_is_refused():
    """Reached by a program with no site at all: there is no data plate to find."""

    def model(x):
        pass

    message = (
        "the model observes nothing: pyrovae needs the data observed (obs=x) inside a plate "
        "over the batch's rows, e.g. with pyro.plate('data', x.shape[0]): "
        "pyro.sample('x', ..., obs=x)"
    )
    with refused(message):
        log_importance_weights(model, empty_guide, (torch.randn(3),), 2)


def scaled_mixture(scale):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
            with poutine.scale(scale=scale):
                pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)

    return model


@pytest.mark.parametrize(
    "scale", [2.0, torch.tensor(2.0), torch.ones(3)], ids=["float", "tensor", "vector-of-ones"]
)
def test_a_scaled_site_that_depends_on_an_enumerated_site_is_refused_by_the_scaled_bound(scale):
    """The importance-weighted training bound keeps scales and cannot carry one inside the
    sum over an enumerated site; per-example numbers leave the scale out (a training device)
    and are exact."""
    message = (
        "site 'x' is scaled (poutine.scale or a subsampled plate) and depends on an enumerated "
        "site: the importance-weighted bound cannot sum a scaled density exactly; train with "
        "the ELBO (objective='enum'), which scales it outside the sum"
    )
    x = torch.tensor([-1.0, 0.2, 2.5])
    with refused(message):
        log_importance_weights(scaled_mixture(scale), empty_guide, (x,), 2, scaled=True)
    lw = log_importance_weights(scaled_mixture(scale), empty_guide, (x,), 2)
    expected = mixture_log_density(x[:, None])
    torch.testing.assert_close(lw, expected[:, None].expand(3, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, torch.tensor(1.0)], ids=["float", "tensor"])
def test_a_unit_scale_is_no_scale(scale):
    x = torch.tensor([-1.0, 0.2, 2.5])
    lw = log_importance_weights(scaled_mixture(scale), empty_guide, (x,), 2)
    expected = mixture_log_density(x[:, None])
    torch.testing.assert_close(lw, expected[:, None].expand(3, 2), rtol=1e-12, atol=1e-12)


def test_plates_the_contraction_cannot_sum_are_refused_with_pyros_reason():
    """y in plate a, z in plate b, x in both: not tree-structured (Pyro's own refusal)."""

    def model(x):
        a, b = pyro.plate("a", 2, dim=-2), pyro.plate("b", 3, dim=-3)
        with pyro.plate("data", x.shape[0], dim=-1):
            with a:
                y = pyro.sample("y", dist.Bernoulli(0.3), infer=PARALLEL)
            with b:
                z = pyro.sample("z", dist.Bernoulli(0.6), infer=PARALLEL)
            with a, b:
                pyro.sample("x", dist.Normal(y + z, 1.0), obs=x.expand(3, 2, -1))

    pattern = (
        r"^the enumerated sites cannot be summed exactly: Expected tree-structured plate "
        r"nesting.*\. pyrovae sums what Pyro's TraceEnum_ELBO sums; restructure the plates as "
        r"its message says$"
    )
    with pytest.raises(ValueError, match=pattern) as info:
        log_marginal(model, empty_guide, torch.randn(4), num_samples=2, progress=False)
    assert isinstance(info.value.__cause__, NotImplementedError)


# ---- masks, unmarked discrete latents, enumerated values -----------------------------------

X = torch.tensor(
    [[0.3, -1.0, 2.2, 0.0], [1.5, 3.1, -0.4, 2.0], [-2.5, -1.9, 0.8, 1.1]], dtype=torch.float64
)
MASK = torch.tensor([[True, False, True, True], [False, False, True, True], [True] * 4])


def test_masked_observations_leave_the_weights_without_enumeration():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("pixels", x.shape[1], dim=-1):
            with poutine.mask(mask=MASK):
                pyro.sample("x", dist.Normal(0.5, 1.5), obs=x)

    lw = log_importance_weights(model, empty_guide, (X,), 2)
    expected = (dist.Normal(0.5, 1.5).log_prob(X) * MASK).sum(-1)
    torch.testing.assert_close(lw, expected[:, None].expand(3, 2), rtol=1e-12, atol=1e-12)


def test_masked_observations_leave_the_enumerated_sum():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
            with pyro.plate("pixels", x.shape[1], dim=-1), poutine.mask(mask=MASK):
                pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)

    lw = log_importance_weights(model, empty_guide, (X,), 2)
    expected = mixture_log_density(X, MASK)
    torch.testing.assert_close(lw, expected[:, None].expand(3, 2), rtol=1e-12, atol=1e-12)


def unmarked_mixture(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(PROBS))  # no infer: summed all the same
        pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x)


def test_the_prior_proposal_sums_an_unmarked_discrete_latent_exactly():
    x = torch.tensor([-1.0, 0.2, 2.5, 4.0])
    marginal = log_marginal(
        unmarked_mixture, empty_guide, x, num_samples=3, proposal="prior", progress=False
    )
    expected = mixture_log_density(x[:, None])
    torch.testing.assert_close(marginal.log_likelihood, expected, rtol=1e-12, atol=1e-12)


def test_enumerated_values_count_the_values_one_pass_holds():
    x = torch.tensor([-1.0, 0.2, 2.5])

    def continuous(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 1.0))

    for model, proposal, values in (
        (continuous, guide, 1),
        (continuous, None, 1),
        (unmarked_mixture, empty_guide, 3),
        (unmarked_mixture, None, 3),
    ):
        model_trace, guide_trace = trace_pair(model, proposal, (x,), 4, 1)
        assert enumerated_values(model_trace, guide_trace, 1) == values, (model, proposal)
    assert math.prod(model_trace.nodes["x"]["fn"].batch_shape) == 3 * 4 * 3


# ---- the data plate a caller names (mutation survivors of infer/plates.py) ----------------


def parts_mixture(x):
    """x (N, P): every part of every example its own mixture draw, c_np ~ Cat(pi),
    x_np ~ N(loc_c, 1), in a plate "examples" over the rows and a plate "data" over the parts,
    so log p(x_n) = sum_p log sum_c pi_c N(x_np; loc_c, 1)."""
    with pyro.plate("examples", x.shape[0], dim=-1), pyro.plate("data", x.shape[1], dim=-2):
        c = pyro.sample("c", dist.Categorical(PROBS), infer=PARALLEL)
        pyro.sample("x", dist.Normal(LOCS[c], 1.0), obs=x.T)


def parts_log_density(x: torch.Tensor) -> torch.Tensor:
    """sum_p log sum_c pi_c N(x_np; loc_c, 1) for x (N, P): (N,)."""
    log_px = dist.Normal(LOCS, 1.0).log_prob(x.unsqueeze(-1))  # (N, P, C)
    return torch.logsumexp(PROBS.log() + log_px, -1).sum(1)


def test_the_data_plate_a_caller_or_the_model_names_holds_the_examples():
    """Three examples of three parts in one pass: both plates have the batch's size.
    ``data_plate="examples"``, or the model's ``data_plate`` attribute, makes log p(x_n) each
    example's exact sum over its parts; unnamed, the plate that shrinks with the batch is
    found, "examples", not the parts' plate whose name is "data" (taking it gave each part's
    sum over the examples, but only at a batch size of 3)."""
    x = torch.tensor([[0.3, -2.2, 2.9], [1.1, 0.4, -0.7], [-1.5, 3.3, 0.0]])
    expected = parts_log_density(x)
    by_parts = parts_log_density(x.T)
    assert not torch.allclose(expected, by_parts)  # the two plates give different answers
    run = {"num_samples": 2, "batch_size": 3, "progress": False}
    named = log_marginal(parts_mixture, empty_guide, x, data_plate="examples", **run)
    torch.testing.assert_close(named.log_likelihood, expected, rtol=1e-12, atol=1e-12)

    def attributed(x):
        parts_mixture(x)

    attributed.data_plate = "examples"
    result = log_marginal(attributed, empty_guide, x, **run)
    torch.testing.assert_close(result.log_likelihood, expected, rtol=1e-12, atol=1e-12)
    for batch_size in (None, 2, 3):
        unnamed = log_marginal(parts_mixture, empty_guide, x, **{**run, "batch_size": batch_size})
        torch.testing.assert_close(unnamed.log_likelihood, expected, rtol=1e-12, atol=1e-12)
    # Training reads the same plate: the program check on a batch of 3 rows.
    assert check_program(parts_mixture, empty_guide, (x,)).data_plate == "examples"
    assert assign(parts_mixture, empty_guide, x)["c"].shape == (3, 3)


def test_two_plates_that_both_follow_the_batch_stay_ambiguous_unless_one_is_data():
    """Plates over the same rows under two names: shrinking the batch tells them not apart,
    so the program is refused naming both (or "data" is taken where it is one of them)."""

    def twice(x, outer="rows"):
        with pyro.plate(outer, x.shape[0], dim=-1), pyro.plate("more", x.shape[0], dim=-2):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x.expand(x.shape[0], x.shape[0]))

    with pytest.raises(ValueError, match=r"the plates \['rows', 'more'\] all have the batch"):
        check_program(twice, empty_guide, (torch.randn(3),))
    report = check_program(lambda x: twice(x, "data"), empty_guide, (torch.randn(3),))
    assert report.data_plate == "data"


def test_a_named_data_plate_that_is_not_around_every_observation_is_refused():
    """The refusal lists the plates that are, to name one of them instead."""
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"the plates that do are \['data', 'examples'\]"):
        log_marginal(
            parts_mixture, empty_guide, x, num_samples=2, progress=False, data_plate="rows"
        )


def test_a_named_data_plate_of_another_size_than_the_batch_is_refused():
    """Naming the parts' plate (4) for a batch of 2 rows says both sizes and the fix: the
    plate must be sized from the data's rows."""
    x = torch.randn(2, 4)
    message = r"the data plate 'data' has size 4 but the batch has 2 rows: .* x\.shape\[0\]"
    with pytest.raises(ValueError, match=message):
        log_marginal(
            parts_mixture, empty_guide, x, num_samples=2, progress=False, data_plate="data"
        )


def test_an_observation_outside_a_data_plate_of_another_name_names_that_plate():
    """The only plate of the batch's size is "rows": the refusal names it, and only the site
    outside it, not a plate "data" the model does not have."""

    def model(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1), obs=x)
        with pyro.plate("rows", x.shape[0]):
            pyro.sample("y", dist.Normal(0.0, 1.0), obs=x)
            pyro.sample("z", dist.Normal(0.0, 1.0))

    message = (
        "the model observes 'x' outside pyro.plate('rows'): per-example log-likelihoods need "
        "every observation inside the data plate"
    )
    with refused(message):
        log_marginal(model, model, torch.randn(3), num_samples=2, progress=False)
