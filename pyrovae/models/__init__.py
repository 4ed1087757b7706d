"""Generative programs p(x, z), one file per model family, and their closed-form fitting.

:class:`VAE` (deep latent Gaussian model, optionally a beta-VAE through its
``latent_scales``), :class:`SSVAE` (the semi-supervised M2 model), :class:`ADGM` (M2 with
an auxiliary variable a, Maaløe et al. 2016) and :class:`SDGM` (its skip variant, a in the
generative path), :class:`MixturePriorVAE`
(a VAE with a Gaussian-mixture prior whose cluster is summed out: VaDE),
:class:`SequenceVAE` (one code per sequence, a GRU decoder), :class:`DeepMarkovModel` (a
latent state per step under ``pyro.markov``), :class:`FactorAnalysis`
(exact marginal, posterior and EM step) and :class:`GaussianMixture` (with its
:class:`MixturePrior` and :func:`empty_guide`) are Pyro programs that keep the contract
:mod:`pyrovae.infer` trains and evaluates. :func:`~pyrovae.models.fit_mixture` fits a mixture by EM
with k-means++ seeds and restarts (:mod:`pyrovae.models.mixture_em`); it is the one part of this
package that imports :mod:`pyrovae.infer` (its generic EM driver), and
:class:`MixturePriorVAE` uses it to initialise its prior. Every other module here depends
only on pyrovae's shared modules (``distributions``, ``likelihoods``, ``module``, ``nn``,
``kmeans``).

Every family is importable from its own module (``pyrovae.models.vae.VAE``); a family added
as a module needs no line here, and the names below are exported for the families before it.
"""

from .adgm import ADGM, SDGM
from .dmm import DeepMarkovModel
from .factor_analysis import FactorAnalysis
from .mixture import GaussianMixture, MixturePrior, empty_guide
from .mixture_em import fit_mixture
from .mixture_vae import MixturePriorVAE
from .sequence_vae import SequenceVAE
from .ssvae import SSVAE
from .vae import VAE

__all__ = [
    "ADGM",
    "DeepMarkovModel",
    "FactorAnalysis",
    "GaussianMixture",
    "MixturePrior",
    "MixturePriorVAE",
    "SDGM",
    "SSVAE",
    "SequenceVAE",
    "VAE",
    "empty_guide",
    "fit_mixture",
]
