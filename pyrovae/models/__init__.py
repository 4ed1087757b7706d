"""Generative programs p(x, z), one file per model family."""

from .vae import VAE

__all__ = ["VAE"]
