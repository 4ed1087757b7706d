"""The mixture-prior VAE's procedure as a Python user runs it: pretraining moves the decoder
and the encoder but not the mixture, and the mixture is then set from the codes."""

from __future__ import annotations

import pyro
import pytest
import torch
from sklearn.datasets import load_digits

from pyrovae.diagnostics.mixture_vae_figures import mean_codes
from pyrovae.guides import GaussianEncoder
from pyrovae.kmeans import kmeans
from pyrovae.models import MixturePriorVAE
from pyrovae.procedures.mixture_vae import initialize_prior, pretrain


def pair():
    pyro.set_rng_seed(0)
    model = MixturePriorVAE(64, num_components=4, latent_dim=3, hidden_dims=(32,))
    return model, GaussianEncoder(64, 3, (32,))


def digits(n: int = 300) -> torch.Tensor:
    return torch.tensor(load_digits().data[:n] > 7, dtype=torch.float32)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind", ["dae", "ae", "vae"])
def test_pretraining_moves_the_networks_and_leaves_the_mixture(kind):
    model, guide = pair()
    mixture, decoder, encoder = state(model.mixture), state(model.decoder), state(guide)
    history = pretrain(model, guide, digits(), kind=kind, epochs=3, batch_size=100, seed=0)
    assert len(history) == 3 and history[-1]["train_elbo"] > history[0]["train_elbo"]
    assert all(torch.equal(v, state(model.mixture)[k]) for k, v in mixture.items())
    assert any(not torch.equal(v, state(model.decoder)[k]) for k, v in decoder.items())
    assert any(not torch.equal(v, state(guide)[k]) for k, v in encoder.items())


def test_the_mixture_is_set_from_the_codes_by_each_initialisation():
    model, guide = pair()
    x = digits()
    before = state(model.mixture)
    with torch.no_grad():
        initial = float(model.prior_log_prob(mean_codes(guide, x)).mean())
    assert initialize_prior(model, guide, x, init="random") == {"init": "random", "codes": 300}
    assert all(torch.equal(v, state(model.mixture)[k]) for k, v in before.items())
    for init in ("data-kmeans", "code-kmeans", "em"):
        report = initialize_prior(model, guide, x, init=init, restarts=2, seed=0)
        assert report["init"] == init and report["codes"] == 300
        assert sum(report["weights"]) == pytest.approx(1.0)
        assert len(report["weights"]) == 4 and min(report["weights"]) > 0
        # The codes are likelier under the mixture set from them than under the initial one.
        assert report["code_log_likelihood"] > initial + 1.0


def test_k_means_on_the_codes_sets_each_component_to_its_clusters_codes():
    """``code-kmeans`` (DEC's start): component k is the Gaussian of the codes in k-means
    cluster k of the codes, weighted by the cluster's share; ``data-kmeans`` clusters the rows
    x instead, so the two partitions (and mixtures) differ."""
    model, guide = pair()
    x = digits()
    codes = mean_codes(guide, x).double()
    report = initialize_prior(model, guide, x, init="code-kmeans", restarts=2, seed=0)
    labels = kmeans(codes, 4, n_init=2, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64).labels  # fmt: skip
    counts = torch.bincount(labels, minlength=4).double()
    means = torch.stack([codes[labels == k].mean(0) for k in range(4)])
    torch.testing.assert_close(model.mixture.loc.double(), means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(report["weights"]).double(), counts / 300)
    by_rows = MixturePriorVAE(64, num_components=4, latent_dim=3, hidden_dims=(32,))
    by_rows.load_state_dict(model.state_dict())
    initialize_prior(by_rows, guide, x, init="data-kmeans", restarts=2, seed=0)
    assert not torch.allclose(by_rows.mixture.loc, model.mixture.loc)


def test_unknown_settings_are_refused_by_name():
    model, guide = pair()
    with pytest.raises(ValueError, match="kind must be one of"):
        pretrain(model, guide, digits(10), kind="sae", epochs=1)
    with pytest.raises(ValueError, match=r"noise must be in \[0, 1\)"):
        pretrain(model, guide, digits(10), noise=1.0, epochs=1)
    with pytest.raises(ValueError, match="init must be one of"):
        initialize_prior(model, guide, digits(10), init="kmeans")
