"""Inference networks q(z | x) paired with :mod:`pyrovae.models`: Pyro programs with the
model's signature that sample its latent sites, trained with it by :mod:`pyrovae.infer`.

:class:`GaussianEncoder` (the VAE's reparameterised Gaussian) and :class:`DeltaEncoder` (a
point mass: a regularised autoencoder) for one latent vector site "z";
:class:`LinearGaussianEncoder` (a family containing the exact posterior) and
:class:`ExactPosteriorGuide` (the exact posterior) for
:class:`~pyrovae.models.FactorAnalysis`; :class:`SSVAEGuide` (classifier q(y | x), enumerated
when y is unobserved, and encoder q(z | x, y)) for :class:`~pyrovae.models.SSVAE`;
:class:`ADGMGuide` (q(a | x), then q(y | a, x) enumerated and q(z | a, y, x)) for
:class:`~pyrovae.models.ADGM` and :class:`~pyrovae.models.SDGM`;
:class:`SequenceEncoder` (a bidirectional GRU over each sequence's real steps) for
:class:`~pyrovae.models.SequenceVAE`; :class:`MarkovEncoder` (q(z_t | z_{t-1}, x_{t:T})) for
:class:`~pyrovae.models.DeepMarkovModel`. A guide
module may import the model module it is written for; nothing here imports
:mod:`pyrovae.infer`. Every guide is importable from its own module
(``pyrovae.guides.encoder.GaussianEncoder``); a guide added as a module needs no line here.
"""

from .auxiliary import ADGMGuide
from .classifier import SSVAEGuide
from .encoder import DeltaEncoder, GaussianEncoder
from .linear import ExactPosteriorGuide, LinearGaussianEncoder
from .sequence import MarkovEncoder, SequenceEncoder

__all__ = [
    "ADGMGuide",
    "DeltaEncoder",
    "ExactPosteriorGuide",
    "GaussianEncoder",
    "LinearGaussianEncoder",
    "MarkovEncoder",
    "SSVAEGuide",
    "SequenceEncoder",
]
