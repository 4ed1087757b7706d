"""Diagnostics: what a fitted (model, guide) pair learned, as numbers and figures computed
from traces; nothing here knows a model's class.

:mod:`~pyrovae.diagnostics.views` finds the observed and latent sites of any pair
(:func:`find_sites`, :class:`Sites`) and computes what the figures show;
:mod:`~pyrovae.diagnostics.figures` draws arrays into PNG files (no pyplot state);
:func:`write_figures` (:mod:`~pyrovae.diagnostics.vae_figures`) writes the figures of a
VAE-like pair; :mod:`~pyrovae.diagnostics.mixture_figures`,
:mod:`~pyrovae.diagnostics.ssvae_figures`, :mod:`~pyrovae.diagnostics.mixture_vae_figures`,
:mod:`~pyrovae.diagnostics.sequence_figures` and
:mod:`~pyrovae.diagnostics.importance_figures` those of a Gaussian mixture, a semi-supervised
VAE, a mixture-prior VAE, a sequence model (piano rolls) and importance sampling;
:mod:`~pyrovae.diagnostics.clustering` scores clusters against labels (Hungarian-matched
accuracy, ARI, NMI). ArviZ export and paired model comparison (:func:`to_inference_data`,
:func:`elpd` for ``az.compare``, :func:`compare_log_likelihoods`) and the Pareto k-hat
(:func:`pareto_khat`) rest on :mod:`pyrovae.infer`'s estimators.
"""

from ..infer.psis import pareto_khat
from .arviz import compare_log_likelihoods, to_inference_data
from .elpd import elpd
from .vae_figures import write_figures
from .views import Sites, find_sites

__all__ = [
    "Sites",
    "compare_log_likelihoods",
    "elpd",
    "find_sites",
    "pareto_khat",
    "to_inference_data",
    "write_figures",
]
