"""The contract checked at the first step of ``fit``, and the objective read from the program."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hmm import HMM
from pyro.nn import PyroModule, PyroParam

from pyrovae import fit, log_marginal
from pyrovae.infer import Trainer, make_objective

PARALLEL = {"enumerate": "parallel"}


class Gaussian(PyroModule):
    """z ~ N(0, 1), x ~ N(w z, 1), with the plate and site names as given."""

    def __init__(self, plate="data", size=None, observe_outside=False):
        super().__init__()
        self.w = PyroParam(torch.tensor(1.0))
        self.plate, self.size, self.observe_outside = plate, size, observe_outside

    def forward(self, x):
        if self.observe_outside:
            pyro.sample("x", dist.Normal(x.new_zeros(x.shape), 1.0).to_event(1), obs=x)
            with pyro.plate(self.plate, x.shape[0]):
                pyro.sample("z", dist.Normal(0.0, 1.0))
            return
        with pyro.plate(self.plate, self.size or x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(self.w * z, 1.0), obs=x)


class GaussianGuide(PyroModule):
    def __init__(self, plate="data", extra=False):
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.0))
        self.plate, self.extra = plate, extra

    def forward(self, x):
        with pyro.plate(self.plate, x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc + 0 * x, 1.0))
            if self.extra:
                pyro.sample("u", dist.Normal(0.0, 1.0))


x = torch.randn(40)


@pytest.mark.parametrize(
    ("model", "guide", "message"),
    [
        (Gaussian(size=40), GaussianGuide(), "40 vs 10: the batch has 10 examples"),
        (Gaussian(), GaussianGuide(extra=True), "the guide samples 'u', a site the model"),
        (Gaussian(observe_outside=True), GaussianGuide(), "observes 'x' outside pyro.plate"),
    ],
    ids=["plate-size", "guide-site-missing", "observation-outside"],
)
def test_a_broken_contract_is_refused_before_the_first_step(model, guide, message):
    before = model.w.detach().clone() if hasattr(model, "w") else None
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit(model, guide, x, epochs=1, batch_size=10, progress=False)
    assert torch.equal(model.w.detach(), before), "nothing trains before the check"


def test_the_data_plate_is_found_whatever_its_name():
    trainer = Trainer(Gaussian(plate="rows"), GaussianGuide(plate="rows"), x, progress=False)
    assert trainer.program.data_plate == "rows"
    trainer.run(1)


def test_elbo_on_an_enumerating_program_is_refused_and_auto_sums_the_site():
    model, guide = MixtureModel(), MixtureGuide()
    data = torch.cat([torch.randn(30) - 3, torch.randn(30) + 3])
    with pytest.raises(ValueError, match="would sample them instead of summing them"):
        Trainer(model, guide, data, objective="elbo", progress=False)
    with pytest.raises(ValueError, match="would sample them"):
        Trainer(model, guide, data, objective=pyro.infer.Trace_ELBO(), progress=False)
    trainer = Trainer(model, guide, data, batch_size=60, lr=0.05, progress=False)
    assert trainer.objective == "enum"
    assert trainer.program.model_enumerated == ["c"]
    trainer.run(60)
    # Summed exactly, the loss is -log p(x) of a two-component mixture: its fitted means
    # straddle the two clusters.
    assert sorted(model.locs.detach().tolist())[0] < -1.5
    assert sorted(model.locs.detach().tolist())[1] > 1.5


def test_a_program_without_enumeration_trains_with_trace_elbo():
    trainer = Trainer(Gaussian(), GaussianGuide(), x, progress=False)
    assert trainer.objective == "elbo"
    assert trainer.program.enumerated == []


def test_make_objective_explains_auto():
    with pytest.raises(ValueError, match="'auto' is read from a program"):
        make_objective("auto")


class MixtureModel(PyroModule):
    def __init__(self):
        super().__init__()
        self.locs = PyroParam(torch.tensor([-0.5, 0.5]))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(torch.ones(2) / 2), infer=PARALLEL)
            pyro.sample("x", dist.Normal(self.locs[c], 1.0), obs=x)


class MixtureGuide(PyroModule):
    def forward(self, x):
        pass


def test_an_hmm_under_pyro_markov_trains_and_its_viterbi_path_is_found():
    from pyrovae.infer import assign

    torch.manual_seed(1)
    states = torch.zeros(50, 8, dtype=torch.long)
    for t in range(1, 8):
        flip = torch.rand(50) < 0.1
        states[:, t] = torch.where(flip, 1 - states[:, t - 1], states[:, t - 1])
    states[25:] = 1 - states[25:]
    data = torch.tensor([-2.0, 2.0])[states] + 0.5 * torch.randn(50, 8)
    model = HMM()
    history = fit(model, MixtureGuide(), data, epochs=40, batch_size=50, lr=0.1, progress=False)
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    torch.testing.assert_close(model.locs.detach(), torch.tensor([-2.0, 2.0]), atol=0.3, rtol=0)
    path = torch.stack([assign(model, MixtureGuide(), data)[f"s_{t}"] for t in range(8)], -1)
    assert (path == states).float().mean() > 0.95
    # The trained ELBO is log p(x) itself (nothing sampled), equal to log_marginal's sum.
    exact = log_marginal(model, MixtureGuide(), data, num_samples=2, progress=False)
    elbo = -pyro.infer.TraceEnum_ELBO(max_plate_nesting=1).loss(model, MixtureGuide(), data)
    assert exact.log_likelihood.sum().item() == pytest.approx(elbo, abs=1e-3)


class GlobalMean(PyroModule):
    """mu ~ N(0, 10^2) global; x_n ~ N(mu, 1)."""

    def forward(self, x):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


class GlobalMeanGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.0))
        self.log_scale = PyroParam(torch.tensor(0.0))

    def forward(self, x):
        pyro.sample("mu", dist.Normal(self.loc, self.log_scale.exp()))


def test_a_global_latent_trains_under_fit_to_its_conjugate_posterior():
    """One batch holding all N rows: the ELBO's optimum is the exact posterior
    N(sum x / (N + 1/100), 1 / (N + 1/100))."""
    torch.manual_seed(0)
    data = torch.randn(100) + 3.0
    model, guide = GlobalMean(), GlobalMeanGuide()
    fit(
        model,
        guide,
        data,
        epochs=800,
        batch_size=100,
        lr=0.02,
        num_particles=32,
        progress=False,
        seed=0,
    )
    precision = 100 + 1 / 100
    assert guide.loc.item() == pytest.approx(data.sum().item() / precision, abs=0.05)
    assert guide.log_scale.exp().item() == pytest.approx(math.sqrt(1 / precision), rel=0.25)
    result = log_marginal(model, guide, data[:5], num_samples=200, progress=False)
    assert result.estimand == "log posterior predictive"
