"""Stochastic variational inference in one call: :func:`fit`, a :class:`~pyrovae.infer.Trainer`
run for a number of epochs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .batches import Data
from .trainer import History, Trainer


def fit(
    model: Callable,
    guide: Callable,
    data: Data,
    *,
    epochs: int = 10,
    **kwargs: Any,
) -> History:
    """Fit ``guide`` and ``model`` to ``data`` by SVI for ``epochs`` passes; see
    :class:`~pyrovae.infer.Trainer`.

    Returns the per-epoch history: ``train_elbo`` (running mean of the training bound over
    the epoch) and, with ``test_data``, ``test_elbo``, both in nats per example.

    The pair contract has one optional model attribute, ``model.latent_scales``
    (:data:`~pyrovae.infer.scale.LATENT_SCALES`): a dict {latent site name: scale}; each
    named site is scaled by its value in both model and guide while training, so the ELBO's
    KL term for that site is multiplied by the scale (a beta-VAE's beta). The test ELBO is
    unscaled. See :class:`~pyrovae.infer.Trainer` for the other arguments.

    Example:
        >>> import pyrovae
        >>> from pyrovae.data import load_dataset
        >>> data = load_dataset("digits")
        >>> vae = pyrovae.models.VAE(64, latent_dim=4, likelihood="continuous-bernoulli")
        >>> encoder = pyrovae.guides.GaussianEncoder(64, latent_dim=4)
        >>> history = pyrovae.fit(
        ...     vae, encoder, data.train_x, test_data=data.test_x, epochs=2, seed=0,
        ...     progress=False,
        ... )
        >>> [record["epoch"] for record in history], sorted(history[-1])
        ([1, 2], ['epoch', 'seconds', 'test_elbo', 'train_elbo'])
        >>> history[-1]["train_elbo"] > history[0]["train_elbo"]
        True
    """
    return Trainer(model, guide, data, **kwargs).run(epochs)
