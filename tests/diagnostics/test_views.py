import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae.diagnostics import find_sites
from pyrovae.diagnostics.views import active_dims, decode_mean, encode, prior_means, reconstruct
from pyrovae.guides import DeltaEncoder, GaussianEncoder
from pyrovae.models import VAE


def pair():
    return VAE(16, 3, (8,), "gaussian"), GaussianEncoder(16, 3, (8,))


def test_sites_are_found_from_the_traces():
    model, guide = pair()
    sites = find_sites(model, guide, (torch.randn(4, 16),))
    assert (sites.observed, sites.latent, sites.latent_dim) == ("x", "z", 3)


def test_views_agree_with_the_modules_own_computations():
    model, guide = pair()
    x = torch.randn(5, 16)
    sites = find_sites(model, guide, (x,))
    loc, _ = guide.encode(x)
    assert torch.allclose(encode(guide, (x,), "z"), loc)
    z = torch.randn(5, 3)
    assert torch.allclose(decode_mean(model, (x,), sites, z), model.decode(z).mean)
    assert torch.allclose(reconstruct(model, guide, (x,), sites), model.decode(loc).mean)
    assert prior_means(model, (x,), sites).shape == (5, 16)


def test_point_mass_guide_encodes_to_its_code():
    guide = DeltaEncoder(16, 3, (8,))
    x = torch.randn(5, 16)
    assert torch.allclose(encode(guide, (x,), "z"), guide.net(x))


def test_user_named_sites_are_found():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample(
                "obs", dist.Normal(z.sum(-1, keepdim=True).expand(-1, 4), 1.0).to_event(1), obs=x
            )

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))

    sites = find_sites(model, guide, (torch.randn(3, 4),))
    assert (sites.observed, sites.latent) == ("obs", "latent")


def test_a_model_without_a_data_plate_is_explained():
    def model(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand(x.shape).to_event(2), obs=x)

    with pytest.raises(ValueError, match="pyro.plate\\('data', N\\)"):
        find_sites(model, lambda x: None, (torch.randn(3, 4),))


def test_active_dims_ranks_by_spread_of_the_codes():
    codes = torch.randn(500, 3) * torch.tensor([0.1, 3.0, 1.0])
    assert active_dims(codes, 2) == [1, 2]
