"""Shared by the factor-analysis and EM tests: one fixed data set (the one-thread fixture,
``one_thread``, is in conftest.py)."""

import torch


def sample_fa(n=2000, d=8, latent=2, seed=0, dtype=torch.float64) -> torch.Tensor:
    """Rows (n, d) drawn from a fixed factor analyser with noise variances in [0.1, 1.1]."""
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(d, latent, generator=g), torch.randn(d, generator=g)
    psi = 0.1 + torch.rand(d, generator=g)
    z = torch.randn(n, latent, generator=g)
    x = z @ w.T + b + psi.sqrt() * torch.randn(n, d, generator=g)
    return x.to(dtype)
