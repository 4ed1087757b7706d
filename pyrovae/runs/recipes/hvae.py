"""``pyrovae train hvae``: the VAE with two stochastic layers (Burda et al. 2016).

z2 ~ N(0, I), z1 ~ p(z1 | z2), x ~ p(x | decoder(z1)), inferred bottom up by
q(z1 | x) q(z2 | z1): :class:`~pyrovae.models.hvae.HierarchicalVAE` and
:class:`~pyrovae.guides.hierarchical.HierarchicalVAEGuide`. Everything else is the VAE's
recipe: its options (likelihood, binarization, architecture, ``--beta`` on both layers,
``--kl-warmup``), Trace_ELBO on the training rows, importance-sampled ``evaluate`` and the
VAE's figures (drawn from z1, the code x is decoded from), plus ``--top-dim`` for z2.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...guides.hierarchical import HierarchicalVAEGuide
from ...models.hvae import HierarchicalVAE
from ..config import TrainConfig, setting
from .observed import latent_dim_setting
from .vae import VAEOptions, VAERecipe, network_kwargs


@dataclass(frozen=True)
class HierarchicalVAEOptions(VAEOptions):
    latent_dim: int = latent_dim_setting(10, "dimension of z1, the code x is decoded from")
    top_dim: int = setting(5, "dimension of z2, the top latent layer", minimum=1)


class HierarchicalVAERecipe(VAERecipe):
    """See the module docstring."""

    name = "hvae"
    summary = (
        "VAE with two stochastic layers (Burda et al. 2016): z2 ~ N(0, I), "
        "z1 ~ p(z1 | z2), x ~ p(x | z1); q(z1 | x) q(z2 | z1)"
    )
    options = HierarchicalVAEOptions

    def pair(self, config: TrainConfig) -> tuple[HierarchicalVAE, HierarchicalVAEGuide]:
        """The model and its bottom-up guide, every network with the widths of ``--hidden``."""
        kwargs = dict(network_kwargs(config), top_dim=config.top_dim)
        model = HierarchicalVAE(likelihood=config.likelihood, beta=config.beta, **kwargs)
        return model, HierarchicalVAEGuide(**kwargs)
