"""Amortized inference networks q(z | x) paired with :mod:`pyrovae.models`."""

from .encoder import DeltaEncoder, GaussianEncoder

__all__ = ["DeltaEncoder", "GaussianEncoder"]
