"""Inference: SVI training, objectives, minibatching."""

from .batches import TensorBatches, make_batches
from .fit import History, Trainer, TrainingDiverged, collect_params, evaluate_elbo, fit
from .objectives import OBJECTIVES, make_objective
from .scale import SiteScaleMessenger, scale_latents

__all__ = [
    "OBJECTIVES",
    "History",
    "SiteScaleMessenger",
    "TensorBatches",
    "Trainer",
    "TrainingDiverged",
    "collect_params",
    "evaluate_elbo",
    "fit",
    "make_batches",
    "make_objective",
    "scale_latents",
]
