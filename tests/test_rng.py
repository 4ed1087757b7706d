"""A probe run aside changes no random stream, hides its sites, and builds no graph."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyrovae.rng import aside


def probe(w: torch.Tensor) -> torch.Tensor:
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    return w * z + torch.randn(())


def test_a_probe_aside_leaves_the_stream_the_trace_and_autograd_as_they_were():
    w = torch.tensor(2.0, requires_grad=True)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with poutine.trace() as outer:
        with aside():
            value = probe(w)
        after = torch.rand(3)
    assert torch.equal(after, expected)  # the probe's two draws are not the caller's
    assert "z" not in outer.trace.nodes  # blocked: the enclosing trace never saw the site
    assert not value.requires_grad
    with aside(grad=True):
        assert probe(w).requires_grad
