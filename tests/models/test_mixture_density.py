"""The closed-form log-joint of the Gaussian mixture (the E-step's inner loop) against the
program's own enumeration, for every covariance type, both precisions and shapes on both sides
of D = K; and the program path kept where a subclass changes the program."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import MultivariateNormal

from pyrovae.models import GaussianMixture
from pyrovae.models.mixture_density import MixtureLogJoint

COVARIANCES = ("full", "tied", "diag", "spherical")


def random_mixture(k: int, d: int, covariance: str, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    model = GaussianMixture(k, d, covariance).to(dtype)
    with torch.no_grad():
        model.logits.normal_()
        model.loc.normal_(0, 3)
        if covariance in ("full", "tied"):
            model.raw_tril.normal_(0, 0.4)
        else:
            model.log_variance.normal_(0, 0.5)
    return model


def by_hand(model: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """log pi_k + log N(x_n; mu_k, Sigma_k) (N, K) with torch's MultivariateNormal, float64."""
    m = model.double()
    normal = MultivariateNormal(m.loc, scale_tril=m.scale_tril)
    return m.logits.log_softmax(-1) + normal.log_prob(x.double().unsqueeze(-2))


@pytest.mark.parametrize("covariance", COVARIANCES)
@pytest.mark.parametrize("k,d", [(4, 3), (3, 7)])
def test_the_closed_form_equals_the_programs_enumeration_in_float64(covariance, k, d):
    model = random_mixture(k, d, covariance, torch.float64)
    x = 3 * torch.randn(50, d, dtype=torch.float64)
    assert model.closed_form()
    closed = model.log_joint_function()(x).T
    assert closed.shape == (50, k)
    enumerated = model.log_joint(x).T
    torch.testing.assert_close(closed, enumerated, rtol=1e-11, atol=1e-10)
    torch.testing.assert_close(closed, by_hand(model, x), rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_the_closed_form_in_float32_is_as_close_as_the_program(covariance):
    model = random_mixture(5, 6, covariance, torch.float32)
    x = 3 * torch.randn(200, 6)
    closed = model.log_joint_function()(x).T
    assert closed.dtype == torch.float32
    exact = by_hand(model, x)
    error = (closed.double() - exact).abs().max()
    assert error <= 1e-5 * exact.abs().max()
    program = (model.log_joint(x).T.double() - exact).abs().max()
    assert error <= 2 * program + 1e-6 * exact.abs().max()


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_tight_clusters_far_from_the_centre_keep_their_precision(covariance):
    # Two components 1e4 apart with unit-scale spread: the expanded forms about the centre
    # of mass cancel |v|^2 / s = 1e8 down to O(1) terms; float64 keeps about 1e-8 of it.
    model = GaussianMixture(2, 3, covariance).double()
    means = torch.tensor([[1e4, 0.0, 0.0], [-1e4, 5.0, 0.0]], dtype=torch.float64)
    model.set_parameters(
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        means,
        model.covariances.detach(),  # unit covariances in this type's layout
    )
    x = means.repeat_interleave(20, 0) + torch.randn(40, 3, dtype=torch.float64)
    closed = model.log_joint_function()(x).T
    torch.testing.assert_close(closed, by_hand(model, x), rtol=1e-9, atol=1e-6)


def test_centred_rows_and_their_squares_may_be_passed_in():
    model = random_mixture(3, 4, "diag", torch.float64)
    x = torch.randn(10, 4, dtype=torch.float64)
    log_joint = model.log_joint_function()
    centre = model._centre()
    v = x - centre
    torch.testing.assert_close(log_joint(x, v, v.square()), log_joint(x))
    torch.testing.assert_close(log_joint(x, v, None), log_joint(x))


def test_the_class_can_be_used_directly():
    loc = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    log_var = torch.tensor([[0.0, 0.5], [-0.3, 0.2]])
    density = MixtureLogJoint("diag", torch.tensor([0.3, 0.7]).log(), loc, log_var, loc.mean(0))
    x = torch.randn(6, 2, dtype=torch.float64)
    expected = torch.tensor([0.3, 0.7]).log().double() + dist.Normal(
        loc.double(), (0.5 * log_var.double()).exp()
    ).log_prob(x.unsqueeze(-2)).sum(-1)
    torch.testing.assert_close(density(x - loc.mean(0).double()), expected.T)


class StudentMixture(GaussianMixture):
    """A user's subclass with another program: heavy-tailed components."""

    def forward(self, x, y=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(
                "z", dist.Categorical(logits=self.logits), infer={"enumerate": "parallel"}
            )
            scale = self.log_variance[z].mul(0.5).exp()
            pyro.sample("x", dist.StudentT(3.0, self.loc[z], scale).to_event(1), obs=x)
        return z


def test_a_subclass_with_its_own_program_is_enumerated_not_replaced():
    model = StudentMixture(3, 2, "diag").double()
    assert not model.closed_form()
    x = torch.randn(20, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = model.log_joint(x).T  # (N, K) from the Student-t program
    torch.testing.assert_close(model.log_joint_function()(x).T, expected)
    torch.testing.assert_close(model.posterior(x), expected.softmax(-1))
    assert model.score(x) == pytest.approx(float(expected.logsumexp(-1).mean()), rel=1e-12)
    gaussian = GaussianMixture(3, 2, "diag").double()
    gaussian.load_state_dict(model.state_dict())
    assert not torch.allclose(gaussian.log_joint_function()(x).T, expected)


def test_em_agrees_with_the_program_path_step_for_step():
    torch.manual_seed(1)
    x = torch.cat([torch.randn(100, 2) + 4, torch.randn(100, 2) - 4]).double()
    fast = GaussianMixture(2, 2, "full").double().initialize(x, seed=0)
    slow = SlowMixture(2, 2, "full").double()
    slow.load_state_dict(fast.state_dict())
    assert not slow.closed_form()
    for _ in range(5):
        assert fast.em_step(x) == pytest.approx(slow.em_step(x), rel=1e-12)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class SlowMixture(GaussianMixture):
    """The same program, through the trace: log_joint redefined (to itself)."""

    def log_joint(self, x):
        return super().log_joint(x)


@pytest.mark.parametrize("covariance", COVARIANCES)
def test_float32_products_stay_within_their_rounding_of_the_float64_ones(covariance):
    model = random_mixture(4, 6, covariance, torch.float64)
    x = 3 * torch.randn(300, 6, dtype=torch.float64)
    exact = model.log_joint_function()(x)
    model.compute_dtype = torch.float32
    fast = model.log_joint_function()(x)
    assert fast.dtype == torch.float64  # returned in the rows' dtype
    # float32 rounding of the expanded terms, about 1e-7 of their size (here up to ~1e3).
    assert (fast - exact).abs().max() <= 1e-5 * exact.abs().max()
    assert not torch.equal(fast, exact)  # the products did run in float32


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_em_with_float32_products_reaches_the_float64_fit(covariance):
    from pyrovae.models import fit_mixture

    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(4, 20, generator=g, dtype=torch.float64)
    x = centres[torch.arange(2000) % 4] + torch.randn(2000, 20, generator=g, dtype=torch.float64)
    fits = {
        dtype: fit_mixture(
            x, 4, covariance=covariance, max_iter=30, compute_dtype=dtype, progress=False
        )
        for dtype in (torch.float64, torch.float32)
    }
    (exact, exact_history), (fast, fast_history) = fits[torch.float64], fits[torch.float32]
    assert fast.loc.dtype == torch.float64  # the parameters keep x's dtype
    assert fast_history.restarts[0] == pytest.approx(exact_history.restarts[0], rel=1e-5)
    torch.testing.assert_close(fast.loc, exact.loc, rtol=0, atol=1e-3)
    torch.testing.assert_close(fast.weights, exact.weights, rtol=0, atol=1e-4)


def test_compute_dtype_is_float32_or_float64():
    with pytest.raises(ValueError, match="compute_dtype must be torch.float32 or torch.float64"):
        GaussianMixture(2, 2, compute_dtype=torch.float16)
