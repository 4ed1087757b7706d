"""Each model family's training procedure, beside its model and guide: what ``pyrovae train``
does around :func:`pyrovae.fit` for that family, as library functions a Python user calls.

:mod:`~pyrovae.procedures.semisupervised` (M2, the ADGM and the SDGM): a validation split of
the labelled training rows (:func:`validation_split`) and the epoch selected by validation
accuracy (:class:`ValidationSelection`). :mod:`~pyrovae.procedures.mixture_vae` (VaDE): the
autoencoder pretraining (:func:`~pyrovae.procedures.mixture_vae.pretrain`), the mixture over
z set from the pretrained codes (:func:`~pyrovae.procedures.mixture_vae.initialize_prior`)
and the per-epoch clustering record (:func:`~pyrovae.procedures.mixture_vae.clustering_metric`).
:mod:`~pyrovae.procedures.sequences` (the sequence VAE and the DMM): the test ELBO's terms
each epoch (:func:`~pyrovae.procedures.sequences.terms_metric`) and numbers per time step
(:func:`~pyrovae.procedures.sequences.per_step`).
A procedure may use :mod:`pyrovae.infer` and :mod:`pyrovae.models`; neither imports it, and
the run layer (``pyrovae.runs``) is a thin adapter over it.
"""

from .semisupervised import (
    ValidationSelection,
    ValidationSplit,
    default_validation_size,
    validation_split,
)

__all__ = [
    "ValidationSelection",
    "ValidationSplit",
    "default_validation_size",
    "validation_split",
]
