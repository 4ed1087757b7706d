"""Amortized inference networks q(z | x) paired with :mod:`pyrovae.models`."""

from .classifier import SSVAEGuide
from .encoder import DeltaEncoder, GaussianEncoder
from .linear import ExactPosteriorGuide, LinearGaussianEncoder

__all__ = [
    "DeltaEncoder",
    "ExactPosteriorGuide",
    "GaussianEncoder",
    "LinearGaussianEncoder",
    "SSVAEGuide",
]
