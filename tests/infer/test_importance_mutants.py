"""The edges of ``log_marginal``'s statistics and refusals, found by mutation testing
(benchmarks/mutation.py on infer/importance.py): the summary's keys and thresholds, the
non-finite-weight refusal's whole message, the weight statistics at K = 1, at exactly equal
and at huge log weights, and how many enumerated values a pass holds under each proposal.

Oracles are exact: weights written by hand, or a pair whose every latent is enumerated so
that each weight equals p(x_n).
"""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.infer.importance import log_marginal
from pyrovae.infer.marginal import (
    LogMarginal,
    NonFiniteWeights,
    _finite_or_none,
    check_weights,
    weight_statistics,
)
from pyrovae.infer.passes import default_max_elements, enumerated_size, plate_nesting
from pyrovae.rng import initialised_cuda_devices


@pytest.fixture(autouse=True)
def float64():
    torch.set_default_dtype(torch.float64)  # conftest restores float32 afterwards


def result(khat, elbo=True, estimand="log p(x)") -> LogMarginal:
    khat = torch.tensor(khat, dtype=torch.float64)
    n = len(khat)
    return LogMarginal(
        log_likelihood=torch.arange(n, dtype=torch.float64) - 5.0,
        stderr=torch.full((n,), 0.5),
        ess=torch.arange(1, n + 1, dtype=torch.float64) * 10,
        khat=khat,
        num_samples=7,
        proposal="guide" if elbo else "prior",
        elbo=torch.arange(n, dtype=torch.float64) - 6.0 if elbo else None,
        estimand=estimand,
    )


def test_summary_has_every_number_with_its_value():
    r = result([0.1, 0.7, 0.71, 0.2])
    assert r.summary() == {
        "elbo": pytest.approx(-4.5),
        "log_likelihood": pytest.approx(-3.5),
        "log_likelihood_stderr": pytest.approx(0.25),  # sqrt(4 * 0.25) / 4
        "num_samples": 7,
        "proposal": "guide",
        "estimand": "log p(x)",
        "ess_mean": pytest.approx(25.0),
        "ess_median": pytest.approx(20.0),  # torch's median: the lower middle value
        "ess_min": pytest.approx(10.0),
        "khat_mean": pytest.approx(0.4275),
        "khat_max": pytest.approx(0.71),
        "khat_share_above_0.7": pytest.approx(0.25),  # 0.7 itself is not above
        "proposal_kind": "continuous",
        "exact_examples": 0,
    }


def test_summary_without_an_elbo_and_with_constant_weights():
    r = result([-math.inf, -math.inf], elbo=False, estimand="log posterior predictive")
    s = r.summary()
    assert "elbo" not in s
    assert s["khat_mean"] is None and s["khat_max"] is None
    assert s["khat_share_above_0.7"] == 0.0
    assert s["proposal"] == "prior" and s["estimand"] == "log posterior predictive"


def test_finite_or_none():
    assert _finite_or_none(torch.tensor(0.25)) == 0.25
    assert isinstance(_finite_or_none(torch.tensor(2)), float)
    for value in (math.inf, -math.inf, math.nan):
        assert _finite_or_none(torch.tensor(value)) is None


def message(rows: str, count: int) -> str:
    return re.escape(
        f"the importance weights of {count} example(s) [{rows}] are not finite "
        "(NaN or +inf, or p(x, z) = 0 at every draw), so log p(x) has no estimate there: "
        "check those examples for NaN or values outside the likelihood's support, and the "
        "model and guide for densities that overflow"
    )


def test_check_weights_names_each_kind_of_bad_row_from_offset_zero():
    lw = torch.zeros(5, 3)
    lw[1, 2] = math.nan  # one NaN in a row is enough
    lw[3, 0] = math.inf  # so is one +inf
    with pytest.raises(NonFiniteWeights, match=f"^{message('1, 3', 2)}$"):
        check_weights(lw)
    ok = torch.zeros(2, 3)
    ok[0, :2] = -math.inf  # one draw left with weight > 0
    ok[1, 1] = -1e300
    check_weights(ok)


def test_check_weights_shows_ten_rows_then_an_ellipsis():
    lw = torch.full((12, 2), -math.inf)
    with pytest.raises(
        NonFiniteWeights, match=f"^{message('0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...', 12)}$"
    ):
        check_weights(lw)
    lw = torch.full((10, 2), -math.inf)
    with pytest.raises(NonFiniteWeights, match=f"^{message('0, 1, 2, 3, 4, 5, 6, 7, 8, 9', 10)}$"):
        check_weights(lw)


def test_weight_statistics_by_hand():
    lw = torch.log(torch.tensor([[1.0, 2.0, 3.0, 6.0]]))
    estimate, stderr, ess, khat = weight_statistics(lw)
    w = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert estimate.item() == pytest.approx(math.log(3.0))
    assert stderr.item() == pytest.approx(float(w.std()) / (2 * 3.0))  # sd / (sqrt(K) mean)
    assert ess.item() == pytest.approx(144.0 / 50.0)  # (sum w)^2 / sum w^2
    assert khat.shape == (1,) and khat.item() != -math.inf  # unequal weights: a tail to fit


def test_weight_statistics_survive_huge_log_weights():
    """The weights are exponentiated after subtracting each row's maximum."""
    lw = torch.log(torch.tensor([[1.0, 2.0, 3.0, 6.0]])) + 1000.0
    estimate, stderr, ess, _ = weight_statistics(lw)
    assert estimate.item() == pytest.approx(1000.0 + math.log(3.0))
    assert stderr.item() == pytest.approx(float(torch.tensor([1.0, 2, 3, 6]).std()) / 6.0)
    assert ess.item() == pytest.approx(144.0 / 50.0)


def test_one_draw_has_no_standard_error():
    estimate, stderr, ess, _ = weight_statistics(torch.tensor([[-2.5], [1.0]]))
    assert estimate.tolist() == [-2.5, 1.0]
    assert stderr.tolist() == [math.inf, math.inf]
    assert ess.tolist() == [1.0, 1.0]
    _, stderr, _, _ = weight_statistics(torch.tensor([[-2.5, -2.5]]))
    assert stderr.tolist() == [0.0]


def test_khat_is_minus_inf_only_for_weights_equal_within_1e_9():
    base = torch.randn(1, 200, generator=torch.Generator().manual_seed(0))
    equal = torch.full((1, 200), -3.0)
    equal[0, 5] += 0.9e-9
    near = torch.full((1, 200), -3.0)
    near[0, 5] += 1e-6
    khat = weight_statistics(torch.cat([equal, near, base]))[3]
    assert khat[0] == -math.inf
    assert khat[1] > -math.inf and khat[2] > -math.inf


def test_default_pass_size_and_cuda_devices():
    assert default_max_elements() == 2**21
    assert default_max_elements("cpu") == 2**21
    assert default_max_elements(torch.device("cuda")) == 2**26
    if not torch.cuda.is_initialized():
        assert initialised_cuda_devices() == []


# A mixture: c ~ Cat(pi) enumerated in the model, d ~ Cat(rho) drawn by the guide.
PI = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)


def mixture(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(PI), infer={"enumerate": "parallel"})
        d = pyro.sample("d", dist.Categorical(torch.full((2,), 0.5)))
        pyro.sample("x", dist.Normal(c.double() + d.double(), 1.0), obs=x)


def mixture_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("d", dist.Categorical(torch.full((2,), 0.5)))


def guide_enumerating_d(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("d", dist.Categorical(torch.full((2,), 0.5)), infer={"enumerate": "parallel"})


def test_enumerated_size_counts_per_proposal():
    x = torch.tensor([0.3, 1.7])
    nesting = plate_nesting(mixture, mixture_guide, (x,))
    assert nesting == 1
    # Guide proposal: d drawn, c summed (3 values); prior proposal: d is a discrete model
    # latent with no guide to draw it, so it is summed too (3 x 2 values).
    assert enumerated_size(mixture, mixture_guide, (x,), nesting) == 3
    assert enumerated_size(mixture, mixture_guide, (x,), nesting, proposal="guide") == 3
    assert enumerated_size(mixture, mixture_guide, (x,), nesting, proposal="prior") == 6
    assert enumerated_size(mixture, guide_enumerating_d, (x,), nesting) == 6


def test_every_latent_summed_gives_exact_weights_with_minus_inf_khat():
    x = torch.tensor([0.3, 1.7, -0.4])
    r = log_marginal(mixture, guide_enumerating_d, x, num_samples=5, progress=False)
    c = torch.arange(3.0)[:, None, None]
    d = torch.arange(2.0)[None, :, None]
    joint = PI.log()[:, None, None] + math.log(0.5) + dist.Normal(c + d, 1.0).log_prob(x)
    exact = joint.logsumexp(0).logsumexp(0)
    assert torch.allclose(r.log_likelihood, exact, atol=1e-12)
    assert torch.allclose(r.elbo, exact, atol=1e-12)
    assert (r.khat == -math.inf).all()
    assert r.stderr.abs().max() < 1e-12 and torch.allclose(r.ess, torch.full((3,), 5.0))
    assert r.summary()["khat_max"] is None
    assert r.kind == "exact" and r.summary()["exact_examples"] == 3
    prior = log_marginal(mixture, mixture_guide, x, num_samples=5, proposal="prior", progress=False)
    assert torch.allclose(prior.log_likelihood, exact, atol=1e-12)
    assert prior.elbo is None and prior.proposal == "prior"


def test_check_weights_shows_an_ellipsis_from_eleven_rows():
    lw = torch.full((11, 2), -math.inf)
    rows = "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..."
    with pytest.raises(NonFiniteWeights, match=f"^{message(rows, 11)}$"):
        check_weights(lw)


def normal_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def shifted_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2 + 0.4, 0.6))


@pytest.fixture
def passes(monkeypatch):
    """(rows, particles) of every vectorized pass log_marginal makes."""
    import pyrovae.infer.importance as importance

    calls: list[tuple[int, int]] = []
    original = importance.log_importance_weights

    def recording(model, guide, args, particles, *rest, **kwargs):
        calls.append((args[0].shape[0], particles))
        return original(model, guide, args, particles, *rest, **kwargs)

    monkeypatch.setattr(importance, "log_importance_weights", recording)
    return calls


@pytest.mark.parametrize(
    ("n", "k", "max_elements", "rows", "chunk"),
    [
        # D = 1 counts as 64 numbers per draw; B = max_elements // (4 K) binds, then the chunk.
        (3, 100, 256, 1, 4),
        # ... B = max_elements // 64 binds; every particle in one pass.
        (6, 1, 256, 4, 1),
        # ... at most one particle per pass, even when none fits.
        (2, 10, 64, 1, 1),
        # ... at most 1000 examples per pass.
        (1003, 1, None, 1000, 1),
    ],
)
def test_pass_sizes_follow_the_memory_budget(passes, n, k, max_elements, rows, chunk):
    x = torch.linspace(-2, 2, n)
    log_marginal(
        normal_model, shifted_guide, x, num_samples=k, max_elements=max_elements, progress=False
    )
    assert passes[0] == (rows, chunk)
    assert sum(r * p for r, p in passes) == n * k  # every example drawn K times, once
    assert all(isinstance(r, int) for r, _ in passes)


def test_pass_sizes_count_each_enumerated_value(passes):
    """c takes 3 values: a pass holds 3 copies of the activations, 3 x 64 numbers per draw."""
    x = torch.linspace(-2, 2, 9)
    log_marginal(mixture, mixture_guide, x, num_samples=1, max_elements=768, progress=False)
    assert passes[0] == (4, 1)  # 768 // (3 * 64)


def test_the_progress_bar_counts_examples_and_is_silent_when_asked(capfd):
    x = torch.linspace(-2, 2, 9)
    log_marginal(normal_model, shifted_guide, x, num_samples=5, batch_size=4, progress=False)
    assert capfd.readouterr().err == ""
    log_marginal(normal_model, shifted_guide, x, num_samples=5, batch_size=4, progress=True)
    err = capfd.readouterr().err
    assert "log p(x), K=5" in err and "9/9" in err
    assert re.search(r"(?<![A-Za-z])ex/s|s/ex(?![A-Za-z])", err)


def narrowing_guide(x):
    """The exact posterior's mean, with a scale that shrinks as |x| grows: heavy-tailed
    weights where |x| is large."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5) / (1 + x.abs())))


def test_the_worst_example_is_found_across_passes():
    # The outlier at index 4 (in the second of three passes) has the largest k-hat.
    x = torch.tensor([0.1, -0.3, 0.2, 0.0, 4.5, -0.1, 0.3, 0.2, -0.2])
    r = log_marginal(
        normal_model,
        narrowing_guide,
        x,
        num_samples=400,
        batch_size=3,
        keep_log_weights=True,
        progress=False,
    )
    khat = torch.nan_to_num(r.khat, nan=-math.inf)
    assert int(khat.argmax()) == 4, "the outlier must be the worst, in the middle pass"
    assert r.worst_index == 4
    assert torch.equal(r.worst_log_weights, r.log_weights[4])


def test_log_weights_are_kept_only_when_asked():
    x = torch.linspace(-2, 2, 5)
    assert (
        log_marginal(normal_model, shifted_guide, x, num_samples=3, progress=False).log_weights
        is None
    )


def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x):
    pyro.sample("mu", dist.Normal(0.3, 0.5))


def test_global_latents_are_refused_unless_allowed_in_every_entry_point():
    from pyrovae.infer.passes import importance_pass, log_importance_weights, weighted_pass

    x = torch.linspace(-1, 1, 4)
    for entry in (log_importance_weights, importance_pass, weighted_pass):
        with pytest.raises(ValueError, match="'mu' is a global latent"):
            entry(global_model, global_guide, (x,), 3)
    lw = log_importance_weights(global_model, global_guide, (x,), 3, allow_global=True)
    assert lw.shape == (4, 3)


def test_an_unknown_proposal_is_named_in_every_entry_point():
    from pyrovae.infer.passes import importance_pass, log_importance_weights, weighted_pass

    x = torch.linspace(-1, 1, 4)
    expected = re.escape("proposal must be one of ('guide', 'prior'), got 'posterior'")
    for entry in (log_importance_weights, importance_pass, weighted_pass):
        with pytest.raises(ValueError, match=f"^{expected}$"):
            entry(normal_model, shifted_guide, (x,), 3, proposal="posterior")


def test_the_pass_returns_the_trace_that_holds_the_draws():
    from pyrovae.infer.passes import importance_pass, weighted_pass

    x = torch.linspace(-1, 1, 4)
    lw, trace, _ = weighted_pass(normal_model, shifted_guide, (x,), 5)  # guide by default
    assert lw.shape == (4, 5) and "x" not in trace.nodes  # the guide's trace
    assert trace.nodes["z"]["value"].shape == (5, 4)
    _, trace = importance_pass(normal_model, shifted_guide, (x,), 5, proposal="prior")
    assert trace.nodes["x"]["is_observed"]  # the model's trace: z drawn from the prior
    assert trace.nodes["z"]["value"].shape == (5, 4)
    # One particle keeps its particle dim: draws (1, B), as posterior_draws stacks them.
    lw, trace = importance_pass(normal_model, shifted_guide, (x,), 1)
    assert lw.shape == (4, 1) and trace.nodes["z"]["value"].shape == (1, 4)


def test_plate_depth_without_plates_is_zero():
    from pyro import poutine

    from pyrovae.infer.passes import traced_nesting

    assert traced_nesting() == 0
    trace = poutine.trace(lambda: pyro.sample("a", dist.Normal(0.0, 1.0))).get_trace()
    assert traced_nesting(trace) == 0


def test_defaults_are_a_thousand_draws_with_a_progress_bar_and_nothing_masked(capsys):
    x = torch.tensor([0.3, -1.2])
    r = log_marginal(normal_model, shifted_guide, x)
    assert r.num_samples == 1000 and r.masked is None
    assert "log p(x), K=1000" in capsys.readouterr().err
    assert (
        log_marginal(normal_model, shifted_guide, x, num_samples=7, progress=False).num_samples == 7
    )


def test_one_example_and_a_dataloader_are_estimated():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.tensor([0.3, -1.2, 2.0])
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)  # p(x) = N(x; 0, 2)
    kwargs = dict(num_samples=400, progress=False)
    one = log_marginal(normal_model, shifted_guide, x[:1], **kwargs)
    assert one.log_likelihood.shape == (1,)
    assert abs(one.log_likelihood[0] - exact[0]) < 5 * one.stderr[0]
    loaded = log_marginal(normal_model, shifted_guide, DataLoader(TensorDataset(x), 2), **kwargs)
    assert loaded.num_samples == 400 and loaded.log_likelihood.shape == (3,)
    assert ((loaded.log_likelihood - exact).abs() < 5 * loaded.stderr).all()


def test_the_masking_warning_is_the_callers_and_says_what_happened():
    from pyrovae.infer.marginal import NonFiniteWeightsWarning

    x = torch.tensor([0.3, 2.0, float("nan")])  # after the probe's and the first pass's rows
    with pytest.warns(NonFiniteWeightsWarning) as record:
        log_marginal(
            normal_model, shifted_guide, x, num_samples=4, batch_size=1, progress=False,
            on_nonfinite="mask",
        )  # fmt: skip
    (warning,) = record
    # The caller's line, not the library's nor torch.no_grad's (under mutmut, its trampoline).
    assert not warning.filename.endswith(("importance.py", "_contextlib.py"))
    assert str(warning.message) == (
        "log_marginal: 1 of 3 example(s) [2] have importance weights that give no estimate "
        "(NaN or +inf, or p(x, z) = 0 at every draw); they are left out of the mean and the "
        "summary (LogMarginal.masked)"
    )
