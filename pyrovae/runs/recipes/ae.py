"""``pyrovae train ae``: the deterministic autoencoder baseline (the VAE's decoder, a
point-mass guide), whose 'ELBO' is log p(x, z = f(x)), not a bound."""

from __future__ import annotations

from dataclasses import dataclass

from ...guides import DeltaEncoder
from ...models import VAE
from ..config import TrainConfig
from .observed import ARCHITECTURE, ObservedOptions, ObservedRecipe
from .vae import network_kwargs


@dataclass(frozen=True)
class AutoencoderOptions(ObservedOptions):
    architecture: str = ARCHITECTURE


class AutoencoderRecipe(ObservedRecipe):
    name = "ae"
    summary = "deterministic autoencoder baseline: the VAE's decoder, a point-mass guide"
    options = AutoencoderOptions

    def pair(self, config: TrainConfig) -> tuple[VAE, DeltaEncoder]:
        kwargs = network_kwargs(config)
        return VAE(likelihood=config.likelihood, **kwargs), DeltaEncoder(**kwargs)

    def units(self, config: TrainConfig) -> str:
        return "with a point-mass guide the 'ELBO' is log p(x, z = f(x)), not a bound"
