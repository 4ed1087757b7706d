"""A two-state hidden Markov model, its states enumerated in the model under pyro.markov:
a user's program that TraceEnum_ELBO sums exactly (shared by the tests that need one)."""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from pyro.ops.indexing import Vindex

PARALLEL = {"enumerate": "parallel"}


class HMM(PyroModule):
    """States enumerated under pyro.markov; emission means learned."""

    def __init__(self, states=2):
        super().__init__()
        self.locs = PyroParam(torch.linspace(-0.5, 0.5, states))
        self.trans = torch.tensor([[0.9, 0.1], [0.1, 0.9]])

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            s = pyro.sample("s_0", dist.Categorical(torch.ones(2) / 2), infer=PARALLEL)
            pyro.sample("x_0", dist.Normal(self.locs[s], 0.5), obs=x[:, 0])
            for t in pyro.markov(range(1, x.shape[1])):
                s = pyro.sample(f"s_{t}", dist.Categorical(Vindex(self.trans)[s]), infer=PARALLEL)
                pyro.sample(f"x_{t}", dist.Normal(self.locs[s], 0.5), obs=x[:, t])
