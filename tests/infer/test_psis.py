import numpy as np
import pytest
import torch

from pyrovae.infer.psis import pareto_khat


def pareto_log_weights(shape_xi: float, rows: int, k: int, seed: int = 0) -> torch.Tensor:
    """log w for w ~ Pareto(alpha = 1 / xi): a generalized Pareto tail with shape xi."""
    rng = np.random.default_rng(seed)
    return torch.tensor(np.log(rng.pareto(1.0 / shape_xi, size=(rows, k)) + 1.0))


@pytest.mark.parametrize("xi", [0.3, 0.8, 1.2])
def test_khat_recovers_a_known_tail_shape(xi):
    # The spread of k-hat across 40 rows of 5000 draws is about 0.1-0.15; allow 3 SE of the mean.
    khat = pareto_khat(pareto_log_weights(xi, rows=40, k=5000))
    assert khat.mean().item() == pytest.approx(xi, abs=3 * khat.std().item() / 40**0.5 + 0.02)


def test_sign_convention_takes_log_weights_not_their_negatives():
    # Heavy-tailed weights must give a large k-hat; passing -log w (the other convention)
    # would give a negative one. This pins ArviZ 0.x's convention.
    heavy = pareto_log_weights(0.9, rows=10, k=4000)
    assert pareto_khat(heavy).mean() > 0.7
    assert pareto_khat(-heavy).mean() < 0.0
    light = 0.05 * torch.randn(10, 4000, dtype=torch.float64)
    assert pareto_khat(light).max() < 0.5


def test_too_few_weights_give_nan():
    assert torch.isnan(pareto_khat(torch.zeros(3, 4))).all()
