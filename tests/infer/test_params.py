"""What the Trainer collects from a pair: its parameters, and whether a batch's loss leaves
one without a gradient (DistributedDataParallel must then be told)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule, PyroParam

from pyrovae.infer.params import collect_params, unused_parameters


class Model(PyroModule):
    def __init__(self) -> None:
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.5))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.loc, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)


class Guide(PyroModule):
    def __init__(self, spare: bool) -> None:
        super().__init__()
        self.shift = PyroParam(torch.tensor(0.0))
        # A head this batch's loss never reads (a class head on an unlabelled batch, say).
        self.spare = torch.nn.Linear(1, 1) if spare else None

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2 + self.shift, 0.7))


def test_a_parameter_the_loss_does_not_reach_is_found_and_the_streams_are_left_alone():
    x = torch.tensor([0.3, -1.0, 2.0])
    for spare, want in ((False, False), (True, True)):
        pyro.clear_param_store()  # PyroModules share the store by name
        model, guide = Model(), Guide(spare)
        params, store_names = collect_params(Trace_ELBO(), model, guide, (x,))
        assert len(params) == (4 if spare else 2) and store_names == ["loc", "shift"]
        torch.manual_seed(0)
        before = torch.get_rng_state()
        assert unused_parameters(Trace_ELBO(), model, guide, (x,), params) is want
        assert torch.equal(torch.get_rng_state(), before)  # drawn off the caller's stream


def test_pyros_store_parameters_are_collected_by_name_once():
    def model(x):
        loc = pyro.param("prior_loc", torch.tensor(0.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        scale = pyro.param("q_scale", torch.tensor(0.7), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, scale))

    pyro.clear_param_store()
    params, names = collect_params(Trace_ELBO(), model, guide, (torch.zeros(3),))
    assert names == ["prior_loc", "q_scale"]
    store = pyro.get_param_store()
    unconstrained = {id(store.get_param(n).unconstrained()) for n in names}
    assert {id(p) for p in params} == unconstrained  # the optimizer steps the free values
    assert unused_parameters(Trace_ELBO(), model, guide, (torch.zeros(3),), params) is False
