"""Inference for any (model, guide) pair of Pyro programs that keeps pyrovae's contract (its
examples observed inside ``pyro.plate("data", N)``; an optional ``model.latent_scales``).

The package holds: SVI training (:func:`fit`, :class:`Trainer`, :class:`History`,
:func:`collect_params`, :func:`evaluate_elbo`) with the objectives it takes by name
(:data:`~pyrovae.infer.objectives.OBJECTIVES`, :func:`make_objective`, :class:`IWAE_ELBO`) or reads
from the program (:func:`choose_objective`) after checking the pair on a first batch
(:func:`check_program`,
:class:`ProgramReport`); importance-sampled log p(x) with enumerated sites summed exactly
(:func:`log_marginal`, :class:`LogMarginal`, :func:`log_importance_weights`); the discrete
posterior of enumerated sites (:func:`assign`); the generic EM driver for models with a
closed-form M-step (:func:`~pyrovae.infer.em`, :class:`EMHistory`); the semi-supervised objective
(:class:`SemiSupervisedELBO`); the protocol of data that cut themselves into batches
(:class:`BatchSource`), by which the fitting code takes a family's data container (the
partly labelled rows and the padded sequences of :mod:`pyrovae.data`) without knowing the
family; and :class:`TrainingDiverged` (defined in :mod:`pyrovae.errors`). Those names,
``__all__``, are the public API; the submodules' other names (minibatching in
:mod:`~pyrovae.infer.batches`, site scaling in :mod:`~pyrovae.infer.scale`, ...) are
importable from their modules as building blocks. Nothing here imports :mod:`pyrovae.models`
or a family's data container: models with their own fitting routines
(``pyrovae.models.fit_mixture``) and the containers (:mod:`pyrovae.data`) call into this
package, not the reverse.
"""

from ..errors import TrainingDiverged
from .batches import BatchSource
from .discrete import assign
from .em import EMHistory, em
from .evaluate import evaluate_elbo
from .fit import fit
from .importance import log_marginal
from .iwae import IWAE_ELBO
from .marginal import LogMarginal
from .objectives import OBJECTIVES, make_objective
from .params import collect_params
from .passes import log_importance_weights
from .program import ProgramReport, check_program, choose_objective
from .semisupervised import SemiSupervisedELBO
from .trainer import History, Trainer

__all__ = [
    "BatchSource",
    "EMHistory",
    "History",
    "IWAE_ELBO",
    "LogMarginal",
    "OBJECTIVES",
    "ProgramReport",
    "SemiSupervisedELBO",
    "Trainer",
    "TrainingDiverged",
    "assign",
    "check_program",
    "choose_objective",
    "collect_params",
    "em",
    "evaluate_elbo",
    "fit",
    "log_importance_weights",
    "log_marginal",
    "make_objective",
]
