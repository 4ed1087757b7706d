"""The device-dependent branches that run on a CPU: the memory budget a pass is sized to,
and the passes log_marginal makes under it (the CUDA tests themselves skip without a GPU)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae.infer.importance as importance
from pyrovae.infer import log_marginal


@pytest.mark.parametrize(
    ("device", "budget"),
    [(None, 2**21), ("cpu", 2**21), ("cuda", 2**26), ("cuda:1", 2**26),
     (torch.device("cuda", 0), 2**26)],
)  # fmt: skip
def test_a_pass_holds_2_21_numbers_on_a_cpu_and_2_26_on_a_gpu(device, budget):
    assert importance.default_max_elements(device) == budget


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 4), 1.0).to_event(1))
        loc = z.sum(-1, keepdim=True)  # (..., N, 1), broadcast over the D = 100 values
        pyro.sample("x", dist.Normal(loc, 1.0).expand(loc.shape[:-1] + x.shape[-1:]).to_event(1),
                    obs=x)  # fmt: skip


def guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 4), 1.0).to_event(1))


@pytest.mark.parametrize("max_elements", [2**12, 2**16, 2**21])
def test_passes_stay_within_the_budget_and_cover_every_draw(monkeypatch, max_elements):
    passes = []
    original = importance.log_importance_weights

    def recording(model, guide, args, particles, *rest, **kwargs):
        passes.append((args[0].shape[0], particles))
        return original(model, guide, args, particles, *rest, **kwargs)

    monkeypatch.setattr(importance, "log_importance_weights", recording)
    x = torch.randn(120, 100)  # D = 100 activations per draw
    k = 200
    r = log_marginal(model, guide, x, num_samples=k, max_elements=max_elements, progress=False)
    assert r.log_likelihood.shape == (120,)
    for batch, particles in passes:
        assert batch * particles * 100 <= max(max_elements, 100 * particles)  # activations
        assert batch * k * 4 <= max(max_elements, 4 * k)  # the (batch, K) log weights
    # Every example gets exactly K draws, whatever the chunking.
    per_batch: dict[int, int] = {}
    seen = 0
    for batch, particles in passes:
        per_batch.setdefault(seen, 0)
        per_batch[seen] += particles
        if per_batch[seen] == k:
            seen += batch
    assert seen == 120 and all(v == k for v in per_batch.values())
    if max_elements == 2**12:
        assert len(passes) > 10  # a small budget really chunks
