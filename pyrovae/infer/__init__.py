"""Inference for any (model, guide) pair: SVI training (``fit``, ``Trainer``) and the
objectives it takes (read from the program by default), the contract checked on a first batch,
importance-sampled log p(x) with enumerated sites summed exactly, discrete posteriors of
enumerated sites (``assign``), the generic EM driver, minibatching and the semi-supervised
objective."""

from .batches import InterleavedBatches, SemiSupervisedData, TensorBatches, make_batches
from .discrete import assign
from .em import EMHistory, em, fit_mixture
from .fit import History, Trainer, TrainingDiverged, collect_params, evaluate_elbo, fit
from .importance import LogMarginal, log_importance_weights, log_marginal
from .iwae import IWAE_ELBO
from .objectives import OBJECTIVES, evaluation_objective, make_objective
from .program import ProgramReport, check_program, choose_objective
from .scale import SiteScaleMessenger, scale_latents
from .semisupervised import SemiSupervisedELBO, balanced_label_indices, split_labeled

__all__ = [
    "EMHistory",
    "IWAE_ELBO",
    "InterleavedBatches",
    "OBJECTIVES",
    "ProgramReport",
    "LogMarginal",
    "History",
    "SemiSupervisedData",
    "SemiSupervisedELBO",
    "SiteScaleMessenger",
    "TensorBatches",
    "Trainer",
    "TrainingDiverged",
    "assign",
    "balanced_label_indices",
    "check_program",
    "choose_objective",
    "collect_params",
    "em",
    "evaluate_elbo",
    "evaluation_objective",
    "fit",
    "fit_mixture",
    "log_importance_weights",
    "log_marginal",
    "make_batches",
    "make_objective",
    "scale_latents",
    "split_labeled",
]
