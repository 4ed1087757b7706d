"""The run layer: what ``pyrovae train | evaluate | sample | plot`` do, on top of the library.

- :mod:`~pyrovae.runs.record`: a run directory's files, the :class:`Run` rebuilt from them,
  atomic writes and safe reads;
- :mod:`~pyrovae.runs.training`, :mod:`~pyrovae.runs.reopen`, :mod:`~pyrovae.runs.evaluation`:
  the orchestration, the same for every family, writing every file itself;
- :mod:`~pyrovae.runs.recipe` and :mod:`~pyrovae.runs.recipes`: what each family brings
  (options, pair, training plan, evaluation, figures), one file per family;
- :mod:`~pyrovae.runs.registry`: the one registry, keyed by model name.

The library (models, guides, infer, diagnostics) never imports this package.
"""

from .config import TrainConfig
from .evaluation import evaluate
from .recipe import Recipe
from .recipes.factory import FactoryData
from .record import Run, RunError
from .registry import RECIPES, config_for, recipe_for
from .reopen import load_run, plot, sample
from .training import train

__all__ = [
    "RECIPES",
    "FactoryData",
    "Recipe",
    "Run",
    "RunError",
    "TrainConfig",
    "config_for",
    "evaluate",
    "load_run",
    "plot",
    "recipe_for",
    "sample",
    "train",
]
