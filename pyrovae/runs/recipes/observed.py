"""Options and hooks shared by recipes whose model observes x through a likelihood of
:data:`pyrovae.likelihoods.LIKELIHOODS` through networks of given widths (vae, ae, ssvae, a
factory's data treatment)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ...data import DataSplits
from ...likelihoods import LIKELIHOODS
from ..config import MAX_INT, OptionsBase, TrainConfig, setting
from ..data import binarized_test_inputs, dynamic_binarization, resolve_likelihood
from ..recipe import Recipe


def positive_ints(what: str) -> Callable[[str], list[int]]:
    """A parser for comma-separated positive integers; ``what`` names them, with an example,
    in the error (raised as ValueError, which argparse reports as an invalid value)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"expected comma-separated integers, got {text!r}") from None
        if not values or min(values) < 1 or max(values) > MAX_INT:
            raise ValueError(f"give {what} (at most {MAX_INT}); got {text!r}")
        return values

    parse.__name__ = "comma-separated integers"
    return parse


def latent_dim_setting(default: int, help: str = "dimension of z") -> Any:
    """``--latent-dim``, the size of the code, as every family declares it (its own default
    and wording); at least 1."""
    return setting(default, help, minimum=1)


def hidden_dims_setting(
    default: tuple[int, ...],
    help: str = "hidden layer widths of encoder and decoder, comma-separated (e.g. 512,256)",
) -> Any:
    """``--hidden``, the networks' hidden widths, as every family declares it; each at
    least 1."""
    example = ",".join(str(h) for h in default)
    return setting(
        default,
        help,
        flag="--hidden",
        parse=positive_ints(f"positive hidden layer widths, e.g. {example}"),
        minimum=1,
    )


@dataclass(frozen=True)
class ObservedOptions(OptionsBase):
    """The latent size, network widths, likelihood and binarization."""

    latent_dim: int = latent_dim_setting(10)
    hidden_dims: tuple[int, ...] = hidden_dims_setting((400,))
    likelihood: str = setting(
        "auto",
        "p(x | z); auto: Bernoulli for binary data and MNIST, continuous Bernoulli for other "
        "values in [0, 1], Gaussian otherwise",
        choices=("auto", *LIKELIHOODS),
    )
    binarize: str = setting(
        "auto",
        "for a Bernoulli on grey values: dynamic resamples training images each epoch (test "
        "images once, fixed seed); auto does so when needed",
        choices=("auto", "dynamic", "none"),
    )


ARCHITECTURE = setting(
    "mlp", "fully connected or convolutional encoder and decoder", choices=("mlp", "conv")
)
BETA = setting(1.0, "KL weight (beta-VAE); 1 is the ELBO")
KL_WARMUP = setting(
    0, "KL warm-up epochs: the latent terms weighted by (e + 1) / (E + 1) in epoch e < E"
)


def warmup_clause(epochs: int) -> str:
    """metrics.json's note on a KL warm-up."""
    if not epochs:
        return ""
    return (
        f"in the first {epochs} epochs train_elbo is the warm-up objective with the latent "
        "terms weighted by kl_weight"
    )


def beta_clause(beta: float) -> str:
    """metrics.json's note on a KL weight other than 1."""
    return "" if beta == 1.0 else f"train_elbo is the beta-weighted bound (beta = {beta})"


class ObservedRecipe(Recipe):
    """Resolves ``--likelihood`` and ``--binarize`` from the data, and binarizes the test rows
    once and the training rows every epoch where that is asked."""

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        chosen = resolve_likelihood(config.likelihood, config.binarize, data)
        config = config.with_options(likelihood=chosen.likelihood, binarize=chosen.binarize)
        return config, [f"likelihood: {chosen.likelihood} ({chosen.why})"]

    def test_inputs(self, config: TrainConfig, data: DataSplits) -> torch.Tensor:
        return binarized_test_inputs(config.binarize, data)

    def transform(self, config: TrainConfig) -> Callable | None:
        return dynamic_binarization if config.binarize == "dynamic" else None
