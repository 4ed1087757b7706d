"""assign: discrete posteriors of any program against exact ones computed by hand (a mixture's
responsibilities, an HMM's Viterbi path, p(c | x, z) at the guide's draw, the SSVAE's q(y | x)),
and its refusals."""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.guides import SSVAEGuide
from pyrovae.infer.discrete import assign
from pyrovae.models import SSVAE

ENUM = {"enumerate": "parallel"}

# ---- a Gaussian mixture with an empty guide: p(c | x) exactly ---------------------------

WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
LOCS = torch.tensor([[0.0, 0.0], [1.5, 0.5], [-1.0, 2.0]], dtype=torch.float64)
SCALES = torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64)


def mixture(x: torch.Tensor) -> None:
    """c_n ~ Cat(w), x_n ~ N(mu_c, s_c^2 I) for x (N, 2)."""
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(WEIGHTS), infer=ENUM)
        pyro.sample("x", dist.Normal(LOCS[c], SCALES[c].unsqueeze(-1)).to_event(1), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    pass


def mixture_posterior(x: torch.Tensor) -> torch.Tensor:
    """p(c = k | x_n) (N, K) by Bayes' rule."""
    log_joint = WEIGHTS.log() + dist.Normal(LOCS, SCALES.unsqueeze(-1)).log_prob(x[:, None]).sum(-1)
    return log_joint.softmax(-1)


def test_map_of_a_mixture_is_the_argmax_of_its_responsibilities():
    x = 2 * torch.randn(40, 2, dtype=torch.float64)
    expected = mixture_posterior(x).argmax(-1)
    assert len(expected.unique()) == 3  # every component wins somewhere
    for batch_size in (1000, 7):  # one pass, and chunks of 7 rows (the last of 5)
        c = assign(mixture, empty_guide, x, batch_size=batch_size)["c"]
        assert c.dtype == torch.long and c.shape == (40,)
        assert torch.equal(c, expected)


def test_draws_from_a_mixture_follow_its_posterior():
    """Temperature 1: each of three ambiguous rows repeated m times; every class frequency is
    within 4 binomial standard errors sqrt(p (1 - p) / m) of the exact p(c | x_n)."""
    rows = torch.tensor([[0.8, 0.3], [-0.5, 1.0], [0.3, 1.2]], dtype=torch.float64)
    p = mixture_posterior(rows)  # (3, K)
    assert (p.amax(-1) < 0.9).all(), "the rows should be ambiguous"
    m = 3000
    c = assign(mixture, empty_guide, rows.repeat_interleave(m, 0), temperature=1)["c"]
    freq = torch.nn.functional.one_hot(c.reshape(3, m), 3).double().mean(1)
    stderr = (p * (1 - p) / m).sqrt()
    assert ((freq - p).abs() <= 4 * stderr).all()


def test_sites_in_a_plate_inside_the_data_plate_come_out_per_example():
    """c (M, N) in a plate "parts" at dim -2, left of the data plate, comes back (N, M)."""

    def parts_model(x: torch.Tensor) -> None:  # x (N, M, 2): M parts of each example
        with pyro.plate("data", x.shape[0], dim=-1), pyro.plate("parts", x.shape[1], dim=-2):
            c = pyro.sample("c", dist.Categorical(WEIGHTS), infer=ENUM)  # (M, N)
            obs = x.transpose(0, 1)  # (M, N, 2)
            pyro.sample("x", dist.Normal(LOCS[c], SCALES[c].unsqueeze(-1)).to_event(1), obs=obs)

    x = 2 * torch.randn(9, 4, 2, dtype=torch.float64)
    c = assign(parts_model, empty_guide, x, batch_size=5)["c"]
    assert c.shape == (9, 4)
    assert torch.equal(c, mixture_posterior(x.reshape(-1, 2)).argmax(-1).reshape(9, 4))


# ---- an HMM under pyro.markov: the Viterbi path ------------------------------------------

INIT = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
TRANS = torch.tensor(
    [[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]], dtype=torch.float64
)  # sticky: the path is not the pointwise argmax of the emissions
MEANS = torch.tensor([-1.5, 0.0, 1.5], dtype=torch.float64)
NOISE = 1.0


def hmm(x: torch.Tensor) -> None:
    """s_0 ~ Cat(init), s_t ~ Cat(A[s_{t-1}]), x_t ~ N(m_{s_t}, sigma^2) for x (N, T)."""
    with pyro.plate("data", x.shape[0]):
        s = None
        for t in pyro.markov(range(x.shape[1])):
            probs = INIT if s is None else TRANS[s]
            s = pyro.sample(f"s_{t}", dist.Categorical(probs), infer=ENUM)
            pyro.sample(f"x_{t}", dist.Normal(MEANS[s], NOISE), obs=x[:, t])


def viterbi(x: torch.Tensor) -> torch.Tensor:
    """argmax_s p(s | x) for x (N, T) by dynamic programming: paths (N, T)."""
    emission = dist.Normal(MEANS, NOISE).log_prob(x.unsqueeze(-1))  # (N, T, K)
    score = INIT.log() + emission[:, 0]  # (N, K): best log p(s_0..s_t = k, x_0..x_t)
    back = []
    for t in range(1, x.shape[1]):
        best, arg = (score.unsqueeze(-1) + TRANS.log()).max(1)  # over s_{t-1}: (N, K)
        score, _ = best + emission[:, t], back.append(arg)
    state = score.argmax(-1)
    path = [state]
    for arg in reversed(back):
        state = arg.gather(1, state.unsqueeze(-1)).squeeze(-1)
        path.append(state)
    return torch.stack(path[::-1], -1)


def test_map_of_an_hmm_is_its_viterbi_path():
    n, t = 30, 8
    x = 1.5 * torch.randn(n, t, dtype=torch.float64)
    out = assign(hmm, empty_guide, x, batch_size=12)
    assert list(out) == [f"s_{i}" for i in range(t)]
    path = torch.stack([out[f"s_{i}"] for i in range(t)], -1)
    expected = viterbi(x)
    assert torch.equal(path, expected)
    pointwise = dist.Normal(MEANS, NOISE).log_prob(x.unsqueeze(-1)).argmax(-1)
    assert not torch.equal(expected, pointwise)  # the joint MAP is not per step


# ---- a continuous latent from the guide: p(c | x, z) at the guide's draw -----------------

SHIFTS = torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64)
PI = torch.tensor([0.3, 0.4, 0.3], dtype=torch.float64)
SIGMA = 0.5


def shifted(x: torch.Tensor, index: torch.Tensor) -> None:
    """z_n ~ N(0, 1), c_n ~ Cat(pi), x_n ~ N(z_n + a_c, sigma^2) for x (N,)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        c = pyro.sample("c", dist.Categorical(PI), infer=ENUM)
        pyro.sample("x", dist.Normal(z + SHIFTS[c], SIGMA), obs=x)


def test_map_with_a_continuous_latent_conditions_on_the_guides_draw():
    """q(z_n | x_n) = N(x_n / 2, 1); the guide records its draw of every row (``index`` rides
    along in the arguments), and assign's c_n is argmax_c pi_c N(x_n; z_n + a_c, sigma^2) at
    that draw, not at the guide's mean."""
    n = 40
    x = 3 * torch.randn(n, dtype=torch.float64)
    drawn = torch.full((n,), float("nan"), dtype=torch.float64)

    def guide(x: torch.Tensor, index: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            drawn[index] = pyro.sample("z", dist.Normal(0.5 * x, 1.0))

    out = assign(shifted, guide, (x, torch.arange(n)), batch_size=16)
    assert list(out) == ["c"]  # z is the guide's, not enumerated

    def map_at(z: torch.Tensor) -> torch.Tensor:
        return (PI.log() + dist.Normal(z[:, None] + SHIFTS, SIGMA).log_prob(x[:, None])).argmax(-1)

    assert not drawn.isnan().any()
    assert torch.equal(out["c"], map_at(drawn))
    assert not torch.equal(out["c"], map_at(0.5 * x))  # the test tells the draw from the mean


def test_a_latent_drawn_given_the_enumerated_site_is_conditioned_on_not_gathered():
    """z_n ~ N(mu_c, 1) given the enumerated c_n (a mixture prior over a code, as in VaDE),
    drawn by the guide: assign's c_n is argmax_c pi_c N(z_n; mu_c, 1) N(x_n; z_n, 1) at the
    guide's draw (x does not depend on c given z), and its draws follow that posterior. Pyro's
    replay would hand z to infer_discrete as a query and fail ("Invalid tensor shape")."""
    mus = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    n = 4000
    x = torch.linspace(-4, 4, n, dtype=torch.float64)
    drawn = torch.full((n,), float("nan"), dtype=torch.float64)

    def model(x: torch.Tensor, index: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(PI), infer=ENUM)
            z = pyro.sample("z", dist.Normal(mus[c], 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x: torch.Tensor, index: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            drawn[index] = pyro.sample("z", dist.Normal(0.5 * x, 0.8))

    def posterior(z: torch.Tensor) -> torch.Tensor:
        return (PI.log() + dist.Normal(mus, 1.0).log_prob(z[:, None])).softmax(-1)

    pyro.set_rng_seed(0)
    out = assign(model, guide, (x, torch.arange(n)), batch_size=1000)
    assert torch.equal(out["c"], posterior(drawn).argmax(-1))
    pyro.set_rng_seed(1)
    draws = assign(model, guide, (x, torch.arange(n)), temperature=1, batch_size=1000)["c"]
    expected = posterior(drawn).sum(0)  # expected count of each value
    counts = torch.bincount(draws, minlength=3).double()
    # Sums of independent Bernoulli draws: within 4 standard deviations of their means.
    sd = (posterior(drawn) * (1 - posterior(drawn))).sum(0).sqrt()
    assert torch.all((counts - expected).abs() <= 4 * sd), (counts, expected, sd)
    assert torch.all(counts > 100)  # every value drawn: the check is not of a constant


# ---- the semi-supervised VAE: the guide's class posterior q(y | x) ----------------------


def test_ssvae_class_is_the_guides_posterior():
    """The guide enumerates y: assign's MAP is the classifier's argmax, guide.predict, and its
    draws follow q(y | x) within 4 binomial standard errors."""
    model = SSVAE(6, num_classes=3, latent_dim=2, hidden_dims=(8,))
    guide = SSVAEGuide(6, num_classes=3, latent_dim=2, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((25, 6), 0.4))
    out = assign(model, guide, x, batch_size=10)
    assert list(out) == ["y"]
    assert torch.equal(out["y"], guide.predict(x))
    m = 3000
    q = guide.predict_proba(x[:1])[0].double()
    y = assign(model, guide, x[:1].expand(m, 6), temperature=1)["y"]
    freq = torch.bincount(y, minlength=3).double() / m
    assert ((freq - q).abs() <= 4 * (q * (1 - q) / m).sqrt()).all()


def test_guide_and_model_enumeration_together():
    """The guide enumerates y (q(y | x) = Cat(softmax(x w))), the model c: at temperature 0,
    y_n is argmax_y q(y | x_n) and c_n is argmax_c p(c | x_n, y_n) at that y."""
    w = torch.tensor([0.7, -0.4], dtype=torch.float64)

    def model(x: torch.Tensor) -> None:  # x (N,)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(torch.ones(2, dtype=torch.float64) / 2))
            c = pyro.sample("c", dist.Categorical(PI), infer=ENUM)
            pyro.sample("x", dist.Normal(2 * y.to(x.dtype) + SHIFTS[c], SIGMA), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=x[:, None] * w), infer=ENUM)

    x = 3 * torch.randn(30, dtype=torch.float64)
    out = assign(model, guide, x, batch_size=11)
    assert list(out) == ["y", "c"]
    y = (x[:, None] * w).argmax(-1)
    c = (PI.log() + dist.Normal(2 * y[:, None] + SHIFTS, SIGMA).log_prob(x[:, None])).argmax(-1)
    assert len(y.unique()) == 2
    assert torch.equal(out["y"], y) and torch.equal(out["c"], c)


@pytest.mark.parametrize("n", [7, 3])
def test_a_guide_enumerated_one_hot_class_comes_out_one_row_per_example(n):
    """y ~ OneHotCategorical(softmax(x_n w)) enumerated by the guide, C = 3 classes: the MAP
    is one_hot(argmax_y q(y | x_n)) of shape (N, C), with N = 7 and N = C = 3 (where (C, N)
    would have the right shape and the wrong rows); draws are one-hot rows (N, C)."""
    w = torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    means = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)

    def model(x: torch.Tensor) -> None:  # x (N,)
        with pyro.plate("data", x.shape[0]):
            prior = dist.OneHotCategorical(torch.ones(3, dtype=torch.float64) / 3)
            y = pyro.sample("y", prior)
            pyro.sample("x", dist.Normal((y * means).sum(-1), 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.OneHotCategorical(logits=x[:, None] * w), infer=ENUM)

    x = torch.tensor([2.0, -1.5, 0.1, 3.0, -0.2, -2.5, 1.0], dtype=torch.float64)[:n]
    expected = torch.nn.functional.one_hot((x[:, None] * w).argmax(-1), 3).double()
    if n == 3:
        assert not torch.equal(expected, expected.T)  # the transpose is a wrong answer
    out = assign(model, guide, x, batch_size=5)
    assert list(out) == ["y"]
    assert out["y"].shape == (n, 3) and torch.equal(out["y"], expected)
    drawn = assign(model, guide, x, temperature=1, batch_size=5)["y"]
    assert drawn.shape == (n, 3) and torch.equal(drawn.sum(-1), torch.ones(n, dtype=drawn.dtype))


# ---- refusals ----------------------------------------------------------------------------


def test_refuses_bad_temperatures():
    x = torch.randn(5, 2, dtype=torch.float64)
    for temperature in (0.5, 2, -1, True):
        with pytest.raises(ValueError, match="temperature must be 0"):
            assign(mixture, empty_guide, x, temperature)


def test_refuses_a_program_with_nothing_enumerated():
    def unmarked(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(WEIGHTS))
            pyro.sample("x", dist.Normal(LOCS[c], 1.0).to_event(1), obs=x)

    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\['c'\].*infer=\{'enumerate': 'parallel'\}"):
        assign(unmarked, empty_guide, x)

    def continuous(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def continuous_guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x, 1.0).to_event(1))

    with pytest.raises(ValueError, match="no enumerated site"):
        assign(continuous, continuous_guide, x)


def test_refuses_sequential_and_global_enumeration():
    def sequential(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(WEIGHTS), infer={"enumerate": "sequential"})
            pyro.sample("x", dist.Normal(LOCS[c], 1.0).to_event(1), obs=x)

    def global_class(x: torch.Tensor) -> None:
        c = pyro.sample("c", dist.Categorical(WEIGHTS), infer=ENUM)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(LOCS[c], 1.0).to_event(1), obs=x)

    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="'c'.*'parallel'"):
        assign(sequential, empty_guide, x)
    with pytest.raises(ValueError, match="'c' is outside pyro.plate"):
        assign(global_class, empty_guide, x)
    with pytest.raises(ValueError, match="no rows"):
        assign(mixture, empty_guide, x[:0])


# ---- the arguments and the data plate (mutation survivors of infer/discrete.py) ----------


def test_the_data_plate_a_caller_names_is_the_one_answered_per_example():
    """Each example has two parts, the parts' plate is called "data" and the examples' plate
    "examples": with ``data_plate="examples"`` (or the model's ``data_plate`` attribute) c comes
    back (N, 2), example by example, exactly the mixture's MAP. The rows probed first are two,
    as many as the parts, so a name lost on the way would pick the parts' plate."""

    def model(x: torch.Tensor) -> None:  # x (N, 2 parts, 2)
        with pyro.plate("examples", x.shape[0], dim=-1), pyro.plate("data", 2, dim=-2):
            c = pyro.sample("c", dist.Categorical(WEIGHTS), infer=ENUM)  # (2, N)
            obs = x.transpose(0, 1)
            pyro.sample("x", dist.Normal(LOCS[c], SCALES[c].unsqueeze(-1)).to_event(1), obs=obs)

    x = 2 * torch.randn(9, 2, 2, dtype=torch.float64)
    expected = mixture_posterior(x.reshape(-1, 2)).argmax(-1).reshape(9, 2)
    c = assign(model, empty_guide, x, batch_size=5, data_plate="examples")["c"]
    assert c.shape == (9, 2) and torch.equal(c, expected)
    model.data_plate = "examples"
    assert torch.equal(assign(model, empty_guide, x, batch_size=5)["c"], expected)


def test_none_and_scalar_arguments_pass_through_to_every_chunk():
    """x may be a tuple (x, shift, labels) with a 0-dim tensor and a None among the row
    tensors (the SSVAE's ``(x, None)``): every chunk gets them unchanged, and c is the MAP of
    the mixture of x - shift."""
    shift = torch.tensor(0.75, dtype=torch.float64)

    def model(x: torch.Tensor, shift: torch.Tensor, labels: None) -> None:
        assert labels is None and shift.dim() == 0
        mixture(x - shift)

    x = 2 * torch.randn(11, 2, dtype=torch.float64)
    out = assign(model, lambda *args: None, (x, shift, None), batch_size=4)
    assert torch.equal(out["c"], mixture_posterior(x - shift).argmax(-1))


def test_a_one_valued_enumerated_site_is_assigned_without_a_warning():
    """A mixture of one component (K = 1, allowed for the mixture VAE) enumerates a site with
    a single value, which Pyro's infer_discrete sees as nothing enumerated: assign answers 0
    for every example and prints no "found no sample sites configured for enumeration"
    warning, which would tell the user to mark a site they did mark."""

    def one(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(torch.ones(1)), infer=ENUM)
            pyro.sample("x", dist.Normal(c.to(x.dtype), 1.0), obs=x)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = assign(one, empty_guide, torch.randn(5), batch_size=3)["c"]
    assert torch.equal(c, torch.zeros(5, dtype=torch.long))
