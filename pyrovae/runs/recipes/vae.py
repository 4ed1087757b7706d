"""``pyrovae train vae``: the variational autoencoder (and beta-VAE) with a Gaussian encoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...data import DataSplits
from ...guides import GaussianEncoder
from ...models import VAE
from ..config import TrainConfig
from ..recipe import TrainingPlan
from .observed import (
    ARCHITECTURE,
    BETA,
    KL_WARMUP,
    ObservedOptions,
    ObservedRecipe,
    beta_clause,
    warmup_clause,
)


@dataclass(frozen=True)
class VAEOptions(ObservedOptions):
    architecture: str = ARCHITECTURE
    beta: float = BETA
    kl_warmup: int = KL_WARMUP

    def validate(self) -> None:
        super().validate()
        if not self.beta > 0:
            raise ValueError(f"--beta must be positive, got {self.beta}")
        if self.kl_warmup < 0:
            raise ValueError(f"--kl-warmup must be >= 0, got {self.kl_warmup}")


def network_kwargs(config: TrainConfig) -> dict:
    """The shapes the VAE's decoder and its encoders share."""
    return dict(
        input_dim=config.input_dim,
        latent_dim=config.latent_dim,
        hidden_dims=tuple(config.hidden_dims),
        architecture=config.architecture,
        image_shape=tuple(config.image_shape) if config.image_shape else None,
    )


class VAERecipe(ObservedRecipe):
    """z ~ N(0, I), x ~ p(x | decoder(z)), q(z | x) Gaussian; ``--beta`` weights the KL."""

    name = "vae"
    summary = "variational autoencoder: z ~ N(0, I), x ~ p(x | decoder(z)); --beta for beta-VAE"
    options = VAEOptions

    def pair(self, config: TrainConfig) -> tuple[VAE, GaussianEncoder]:
        kwargs = network_kwargs(config)
        return VAE(likelihood=config.likelihood, beta=config.beta, **kwargs), GaussianEncoder(
            **kwargs
        )

    def plan(
        self, config: TrainConfig, data: DataSplits, guide: Callable, out: Path
    ) -> TrainingPlan:
        return TrainingPlan(data, (data.train_x,), kl_warmup=config.kl_warmup)

    def units(self, config: TrainConfig) -> str:
        return "; ".join(
            c for c in (beta_clause(config.beta), warmup_clause(config.kl_warmup)) if c
        )
