"""A user's own data container (pyrovae.infer.BatchSource) is trained on and evaluated like
tensors: the fitting code asks it for batches and for N, and knows nothing else of it."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.infer import BatchSource, Trainer, evaluate_elbo
from pyrovae.infer.batches import TensorBatches, make_batches


class Weighted:
    """Rows x (N, D) with a weight per row (N,), batched as (x, w): a container no part of
    pyrovae knows."""

    def __init__(self, x: torch.Tensor, w: torch.Tensor) -> None:
        self.x, self.w = x, w
        self.calls = []

    def __len__(self) -> int:
        return self.x.shape[0]

    def batches(self, batch_size, shuffle, generator, transform, device, shard):
        self.calls.append((batch_size, shuffle))
        return TensorBatches((self.x, self.w), batch_size, shuffle, generator, transform, shard)


def global_mean_model(x, w):
    """mu ~ N(0, 10^2) global; x_n ~ N(mu, 1) with log-density weighted by w_n."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", x.shape[0]), pyro.poutine.scale(scale=w):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_mean_guide(x, w):
    loc = pyro.param("loc", torch.tensor(0.0))
    pyro.sample("mu", dist.Normal(loc, 0.1))


def test_the_protocol_is_recognised_by_its_methods_not_by_a_pyrovae_class():
    data = Weighted(torch.zeros(5), torch.ones(5))
    assert isinstance(data, BatchSource)
    assert not isinstance(torch.zeros(5), BatchSource)
    batches = make_batches(data, 2, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert data.calls == [(2, True)] and sum(b[0].shape[0] for b in batches) == 5


def test_a_users_container_trains_a_global_latent_scaled_by_its_length():
    pyro.clear_param_store()
    torch.manual_seed(0)
    x = 3.0 + torch.randn(60)
    data = Weighted(x, torch.ones(60))
    trainer = Trainer(
        global_mean_model, global_mean_guide, data, batch_size=10, lr=0.05, seed=0, progress=False
    )
    assert trainer.subsample_rows == 60  # N from len(data): the batch is 1/6 of the data plate
    trainer.run(epochs=30)
    # The posterior mean of mu given 60 rows: sum(x) / (60 + 1/100).
    exact = float(x.sum() / (60 + 0.01))
    loc = float(pyro.param("loc").detach())
    assert loc == pytest.approx(exact, abs=0.1)
    # The full-data ELBO per row, the global KL counted once: in closed form for q = N(loc, 0.1).
    log_2pi = torch.log(torch.tensor(2 * torch.pi)).item()
    likelihood = (-0.5 * log_2pi - 0.5 * ((x - loc) ** 2 + 0.01)).sum().item()
    prior = -0.5 * (log_2pi + torch.log(torch.tensor(100.0)).item()) - (loc**2 + 0.01) / 200
    entropy = 0.5 * (log_2pi + torch.log(torch.tensor(0.01)).item()) + 0.5
    exact_elbo = (likelihood + prior + entropy) / 60
    torch.manual_seed(1)
    elbo = evaluate_elbo(global_mean_model, global_mean_guide, data, global_plate="data")
    assert elbo == pytest.approx(exact_elbo, abs=0.05)
