"""Generative programs p(x, z), one file per model family."""

from .factor_analysis import FactorAnalysis
from .mixture import GaussianMixture, MixturePrior, empty_guide
from .ssvae import SSVAE
from .vae import VAE

__all__ = ["FactorAnalysis", "GaussianMixture", "MixturePrior", "SSVAE", "VAE", "empty_guide"]
