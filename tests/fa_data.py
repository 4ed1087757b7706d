"""Shared by the factor-analysis and EM tests: one fixed data set and a one-thread fixture."""

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture
def one_thread():
    """These problems are tiny (D = 8): waking a second thread costs more than the arithmetic.
    On a busy two-core machine SVI and EM ran 10x and scikit-learn's SVDs 100x slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def sample_fa(n=2000, d=8, latent=2, seed=0, dtype=torch.float64) -> torch.Tensor:
    """Rows (n, d) drawn from a fixed factor analyser with noise variances in [0.1, 1.1]."""
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(d, latent, generator=g), torch.randn(d, generator=g)
    psi = 0.1 + torch.rand(d, generator=g)
    z = torch.randn(n, latent, generator=g)
    x = z @ w.T + b + psi.sqrt() * torch.randn(n, d, generator=g)
    return x.to(dtype)
