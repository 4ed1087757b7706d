"""Generative programs p(x, z), one file per model family."""

from .factor_analysis import FactorAnalysis
from .vae import VAE

__all__ = ["FactorAnalysis", "VAE"]
