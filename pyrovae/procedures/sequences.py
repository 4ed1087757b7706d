"""The sequence models' procedure (the sequence VAE and the deep Markov model), as
``pyrovae train seqvae | dmm`` runs it around :class:`~pyrovae.infer.Trainer`:

- the sequences batched by length (:class:`~pyrovae.data.SequenceData`: each batch cut to a
  bucket length that holds its longest sequence) and KL warm-up (the Trainer's
  ``kl_warmup``) against posterior collapse;
- each epoch, the test ELBO and its two terms per sequence (:func:`terms_metric`): a KL
  near zero is posterior collapse;
- numbers per time step, as the literature reports them (:func:`per_step`).

Example:
    >>> import torch
    >>> from pyrovae.data import SequenceData
    >>> from pyrovae.guides import SequenceEncoder
    >>> from pyrovae.infer import Trainer
    >>> from pyrovae.models import SequenceVAE
    >>> from pyrovae.procedures.sequences import terms_metric
    >>> x = (torch.rand(16, 6, 3) > 0.5).float()
    >>> lengths = torch.randint(2, 7, (16,))
    >>> model, guide = SequenceVAE(3, latent_dim=2, hidden_dim=8), SequenceEncoder(3, 2, 8)
    >>> trainer = Trainer(
    ...     model, guide, SequenceData(x, lengths), batch_size=8, kl_warmup=2, seed=0,
    ...     metrics=[terms_metric((x, lengths), seed=0)], progress=False,
    ... )
    >>> record = trainer.run(1)[-1]
    >>> sorted(k for k in record if k.startswith("test_"))
    ['test_elbo', 'test_kl', 'test_reconstruction']
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch

from ..infer import Trainer
from ..infer.passes import plate_nesting
from ..infer.terms import elbo_terms
from ..rng import initialised_cuda_devices

#: Draws per test sequence of each epoch's estimate of the ELBO and its terms.
TERMS_DRAWS = 4


def terms_metric(test: tuple[torch.Tensor, ...], seed: int) -> Callable[[Trainer], dict]:
    """An epoch metric: the test ELBO and its reconstruction and KL terms per sequence, from
    the same draws, under a forked random stream seeded with ``seed`` (training's streams
    untouched); the Trainer does not evaluate the test ELBO a second time."""

    nesting: list[int] = []  # found once (running the programs), not every epoch

    def metric(trainer: Trainer) -> dict:
        inputs = tuple(t.to(trainer.device or "cpu") for t in test)
        # Every generator in use forked, CUDA's too: seeding below must not reset the
        # stream training draws from on the next epoch.
        with torch.random.fork_rng(devices=initialised_cuda_devices()):
            if not nesting:
                nesting.append(plate_nesting(trainer.model, trainer.guide, inputs))
            pyro.set_rng_seed(seed)
            terms = elbo_terms(
                trainer.model,
                trainer.guide,
                inputs,
                num_samples=TERMS_DRAWS,
                batch_size=1000 // TERMS_DRAWS,  # the K draws of 250 sequences at once
                nesting=nesting[0],
            )
        return {
            "test_elbo": float(terms.elbo.mean()),
            "test_reconstruction": float(terms.reconstruction.mean()),
            "test_kl": float(terms.kl.mean()),
        }

    return metric


def per_step(per_sequence: float, lengths: torch.Tensor) -> float:
    """A mean over N sequences of a per-sequence number (a log-likelihood, an ELBO) as a
    number per time step, sum_n v_n / sum_n T_n = mean_n v_n * N / sum_n T_n, with T_n the
    ``lengths`` (N,): the negative of a log-likelihood per step is the "NLL per time step"
    of Boulanger-Lewandowski et al. (2012) and Krishnan et al. (2017)."""
    return per_sequence * len(lengths) / float(lengths.sum())
