"""Honest per-example diagnostics for every kind of proposal (:mod:`pyrovae.infer.proposals`):
a Bernoulli guide and a Poisson guide (discrete draws: k-hat not applicable, no standard
error of 0 where the draws tie), an enumerated model (exact by construction: standard error
0, and the summary says so), a guide mixing a Bernoulli and a Normal (k-hat defined).
Exact answers by summing the discrete latent; float64."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.infer import log_marginal
from pyrovae.infer.proposals import EXACT_WHY, KHAT_DISCRETE, STDERR_TIED

X = torch.tensor([-2.0, -0.5, 0.3, 1.1, 2.4, 3.0, 4.5, 6.0], dtype=torch.float64)
PRIOR = 0.3


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def bernoulli_model(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Bernoulli(torch.full_like(x, PRIOR)))
        pyro.sample("x", dist.Normal(3.0 * c, 1.0), obs=x)


def bernoulli_guide(x):
    # Nearly certain far from the boundary: most examples draw one value K times over.
    with pyro.plate("data", x.shape[0]):
        pyro.sample("c", dist.Bernoulli(logits=6.0 * (x - 1.5)))


def bernoulli_exact(x):
    joint = torch.stack(
        [
            math.log(1 - PRIOR) + dist.Normal(0.0, 1.0).log_prob(x),
            math.log(PRIOR) + dist.Normal(3.0, 1.0).log_prob(x),
        ]
    )
    return joint.logsumexp(0)


RATE = 3.0


def poisson_model(x):
    with pyro.plate("data", x.shape[0]):
        n = pyro.sample("n", dist.Poisson(torch.full_like(x, RATE)))
        pyro.sample("x", dist.Normal(n, 1.0), obs=x)


def poisson_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("n", dist.Poisson(x.clamp(min=0.5)))


def poisson_exact(x):
    n = torch.arange(80.0)[:, None]  # the prior's mass beyond 80 is below 1e-60
    return (dist.Poisson(RATE).log_prob(n) + dist.Normal(n, 1.0).log_prob(x)).logsumexp(0)


def test_a_bernoulli_guide_has_no_khat_and_no_standard_error_of_zero():
    result = log_marginal(bernoulli_model, bernoulli_guide, X, num_samples=40, progress=False)
    assert result.kind == "discrete"
    assert result.khat.isnan().all()
    error = (result.log_likelihood - bernoulli_exact(X)).abs()
    tied = result.stderr.isnan()
    # Far from the boundary every draw is the likely value: the weights tie ...
    assert tied[[0, 1, 6, 7]].all(), result.stderr
    # ... and the estimate is still off (the other value's mass), so 0 would be a lie.
    assert (error[tied] > 0).all()
    assert (result.stderr[~tied] > 0).all()
    assert not (result.stderr == 0).any()
    summary = result.summary()
    assert summary["proposal_kind"] == "discrete" and summary["exact_examples"] == 0
    assert summary["khat_not_applicable"] == KHAT_DISCRETE
    assert summary["khat_max"] is None and summary["khat_share_above_0.7"] is None
    assert summary["stderr_undefined_examples"] == tied.nonzero().flatten().tolist()
    assert summary["stderr_undefined_why"] == STDERR_TIED
    se = result.stderr[~tied]
    mean_se = float(se.pow(2).sum().sqrt() / len(se))  # over the examples with one
    assert summary["log_likelihood_stderr"] == pytest.approx(mean_se)


def test_a_poisson_guide_reports_khat_as_not_applicable_and_estimates_within_its_errors():
    result = log_marginal(poisson_model, poisson_guide, X, num_samples=2000, progress=False)
    assert result.kind == "discrete" and result.khat.isnan().all()
    defined = ~result.stderr.isnan()
    assert defined.all()  # many values drawn: no example ties
    z = (result.log_likelihood - poisson_exact(X)) / result.stderr
    assert z.abs().max() < 5, z
    summary = result.summary()
    assert summary["khat_mean"] is None and summary["khat_not_applicable"] == KHAT_DISCRETE
    assert "stderr_undefined_examples" not in summary


def test_an_enumerated_model_is_exact_and_the_summary_says_why():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample(
                "c", dist.Bernoulli(torch.full_like(x, PRIOR)), infer={"enumerate": "parallel"}
            )
            pyro.sample("x", dist.Normal(3.0 * c, 1.0), obs=x)

    def guide(x):
        pass

    result = log_marginal(model, guide, X, num_samples=10, progress=False)
    assert result.kind == "exact"
    assert torch.allclose(result.log_likelihood, bernoulli_exact(X), atol=1e-12)
    assert (result.stderr == 0).all() and torch.allclose(result.ess, torch.full((len(X),), 10.0))
    summary = result.summary()
    assert summary["exact_examples"] == len(X) and summary["exact_why"] == EXACT_WHY
    assert "khat_not_applicable" not in summary


def test_a_guide_mixing_discrete_and_continuous_draws_keeps_its_khat():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(torch.full_like(x, PRIOR)))
            z = pyro.sample("z", dist.Normal(3.0 * c, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(logits=x - 1.5))
            pyro.sample("z", dist.Normal(x, 1.0))

    result = log_marginal(model, guide, X, num_samples=200, progress=False)
    assert result.kind == "mixed"
    assert torch.isfinite(result.khat).all() and (result.stderr > 0).all()
    assert result.summary()["exact_examples"] == 0
    assert "khat_not_applicable" not in result.summary()


def test_eval_json_and_its_table_say_which_diagnostics_do_not_apply():
    from pyrovae.runs.estimates import importance_report, importance_rows

    report, _ = importance_report(
        bernoulli_model,
        bernoulli_guide,
        X,
        num_samples=40,
        batch_size=None,
        progress=False,
        device="cpu",
    )
    assert report["proposal_kind"] == "discrete" and report["exact_examples"] == 0
    assert report["khat"]["not_applicable"] == KHAT_DISCRETE
    assert report["stderr_undefined_why"] == STDERR_TIED
    rows = dict(importance_rows(report))
    assert rows["k-hat > 0.7"] == "not applicable (discrete proposal)"
    tied = len(report["stderr_undefined_examples"])
    assert rows["no standard error (tied draws)"] == f"{tied} of {len(X)} examples"
