"""fit_mixture's options, each by its effect, and its refusals by their whole message: found by
mutation testing (benchmarks/mutation.py on models/mixture_em.py), which the fast suite left
to the slow comparisons with scikit-learn.

Oracles: the same fit run by hand (GaussianMixture.initialize and the EM driver), and exact
reproducibility under a seed.
"""

from __future__ import annotations

import re

import pytest
import torch

from pyrovae.infer.em import em
from pyrovae.models import GaussianMixture, fit_mixture
from pyrovae.models.mixture import MixturePrior


@pytest.fixture
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
    return (centres.repeat(40, 1) + torch.randn(120, 2, generator=g)).double()


def by_hand(x, k, seed, *, init="kmeans++", max_iter=100, tol=1e-3, covariance="full"):
    model = GaussianMixture(k, x.shape[1], covariance).double()
    model.initialize(x, init, seed=seed)
    history = em(model, x, max_iter=max_iter, tol=tol, progress=False)
    return model, history


def same(a: GaussianMixture, b: GaussianMixture) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(p, q) for p, q in pairs)


def test_defaults_are_one_run_of_kmeans_plus_plus_seed_0_100_iterations_tol_1e_3(x):
    g = torch.Generator().manual_seed(1)
    overlapping = x / 4 + 0.5 * torch.randn(x.shape, generator=g, dtype=x.dtype)
    model, history = fit_mixture(overlapping, 3, progress=False)
    expected, expected_history = by_hand(overlapping, 3, seed=0)
    assert same(model, expected)
    assert history.log_likelihood == expected_history.log_likelihood
    gains = torch.tensor(history.log_likelihood).diff()
    assert history.converged and gains[-1] < 1e-3 <= gains[-2]  # stopped by tol = 1e-3
    assert len(history.restarts) == 1
    assert model.covariance == "full" and model.reg_covar == 1e-6 and model.prior is None
    _, never = fit_mixture(x, 3, tol=-1.0, progress=False)  # never converges: max_iter stops it
    assert never.iterations == 100 and not never.converged


def test_options_reach_the_model_and_the_driver(x):
    prior = MixturePrior(concentration=2.0)
    model, history = fit_mixture(
        x, 3, covariance="diag", reg_covar=1e-3, prior=prior, chunk_size=17, max_iter=4,
        tol=-1.0, init="random", seed=3, progress=False,
    )  # fmt: skip
    assert model.covariance == "diag" and model.reg_covar == 1e-3
    assert model.prior is prior and model.chunk_size == 17
    assert history.iterations == 4
    plain = by_hand(x, 3, seed=3, init="random", max_iter=4, tol=-1.0, covariance="diag")[0]
    assert not same(model, plain)  # the prior and reg_covar changed the fit
    random_init = fit_mixture(x, 3, init="random", seed=3, max_iter=1, progress=False)[0]
    kmeans_init = fit_mixture(x, 3, seed=3, max_iter=1, progress=False)[0]
    assert not same(random_init, kmeans_init)


def test_restarts_use_consecutive_seeds_and_the_best_is_kept(x):
    model, history = fit_mixture(x, 3, n_init=3, seed=5, max_iter=2, progress=False)
    singles = [fit_mixture(x, 3, seed=s, max_iter=2, progress=False) for s in (5, 6, 7)]
    assert history.restarts == [h.restarts[0] for _, h in singles]
    best = max(range(3), key=lambda i: history.restarts[i])
    assert same(model, singles[best][0])
    assert history.log_likelihood == singles[best][1].log_likelihood


def test_restarts_score_with_the_prior(x):
    prior = MixturePrior(concentration=3.0, mean_precision=0.5)
    model, history = fit_mixture(x, 3, prior=prior, max_iter=3, progress=False)
    with torch.no_grad():
        log_prior = float(model.log_prior())
    assert history.restarts == [pytest.approx(model.score(x) + log_prior / len(x), abs=1e-12)]
    assert log_prior != 0.0


def test_a_seed_of_none_draws_from_torchs_generator(x):
    torch.manual_seed(11)
    a = fit_mixture(x, 3, seed=None, max_iter=2, progress=False)[0]
    torch.manual_seed(11)
    b = fit_mixture(x, 3, seed=None, max_iter=2, progress=False)[0]
    torch.manual_seed(12)
    c = fit_mixture(x, 3, seed=None, max_iter=2, progress=False, init="random")[0]
    torch.manual_seed(13)
    d = fit_mixture(x, 3, seed=None, max_iter=2, progress=False, init="random")[0]
    assert same(a, b) and not same(c, d)


def test_dtype_follows_x_unless_given(x):
    assert fit_mixture(x, 2, max_iter=1, progress=False)[0].loc.dtype == torch.float64
    assert fit_mixture(x.float(), 2, max_iter=1, progress=False)[0].loc.dtype == torch.float32
    given = fit_mixture(x.float(), 2, max_iter=1, dtype=torch.float64, progress=False)[0]
    assert given.loc.dtype == torch.float64
    integers = (x * 10).round().long()
    assert fit_mixture(integers, 2, max_iter=1, progress=False)[0].loc.dtype == torch.float32


def test_each_run_has_its_own_labelled_bar(x, capfd):
    fit_mixture(x, 2, n_init=2, max_iter=2, progress=True)
    err = capfd.readouterr().err
    assert "em 1/2" in err and "em 2/2" in err
    fit_mixture(x, 2, max_iter=2, progress=False)
    assert capfd.readouterr().err == ""


def refused(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def test_bad_arguments_are_refused_by_their_whole_message(x):
    with refused("x must be a matrix (N, D), got shape (120,)"):
        fit_mixture(x[:, 0], 2)
    between = "num_components must be between 1 and N = 5 (one row per component at least), got"
    with refused(f"{between} 6"):
        fit_mixture(x[:5], 6)
    with refused(f"{between} 0"):
        fit_mixture(x[:5], 0)
    assert fit_mixture(x[:5], 5, max_iter=1, progress=False)[0].num_components == 5
    assert fit_mixture(x[:5], 1, max_iter=1, progress=False)[0].num_components == 1
    with refused("n_init and max_iter must be at least 1, got 0 and 3"):
        fit_mixture(x, 2, n_init=0, max_iter=3)
    with refused("n_init and max_iter must be at least 1, got 2 and 0"):
        fit_mixture(x, 2, n_init=2, max_iter=0)
    assert fit_mixture(x, 2, n_init=1, max_iter=1, progress=False)[1].iterations == 1
