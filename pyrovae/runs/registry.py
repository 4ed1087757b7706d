"""The one registry of recipes, keyed by model name, and the configs they read.

A built-in family is registered here by name; any other name with a colon is a user's
factory (``package.module:function``, :mod:`pyrovae.runs.recipes.factory`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import TrainConfig, make_config
from .recipe import Recipe
from .recipes.adgm import AuxiliaryRecipe, SkipRecipe
from .recipes.ae import AutoencoderRecipe
from .recipes.factory import FactoryRecipe
from .recipes.mixture import MixtureRecipe
from .recipes.mixture_vae import MixtureVAERecipe
from .recipes.sequences import DeepMarkovRecipe, SequenceVAERecipe
from .recipes.ssvae import SemiSupervisedRecipe
from .recipes.vae import VAERecipe

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        VAERecipe(),
        AutoencoderRecipe(),
        MixtureRecipe(),
        MixtureVAERecipe(),
        SemiSupervisedRecipe(),
        AuxiliaryRecipe(),
        SkipRecipe(),
        SequenceVAERecipe(),
        DeepMarkovRecipe(),
    )
}
FACTORY = FactoryRecipe(known=tuple(RECIPES))


def recipe_for(model: str) -> Recipe:
    """The recipe of a model name: a built-in one, else the factory recipe (which explains
    a name that is neither when it builds)."""
    return RECIPES.get(model, FACTORY)


def every_recipe() -> tuple[Recipe, ...]:
    return (*RECIPES.values(), FACTORY)


def option_names() -> set[str]:
    """The names of every recipe's options."""
    return {f.name for r in every_recipe() for f in dataclasses.fields(r.options)}


def config_for(model: str = "vae", **settings: Any) -> TrainConfig:
    """A config for ``model`` from flat settings (common ones and the recipe's options), e.g.
    ``config_for("gmm", components=[2, 4], out="runs/gmm")``; an option of another recipe
    is an error naming it. A common setting not given takes the recipe's own default
    (:attr:`~pyrovae.runs.recipe.Recipe.defaults`), else TrainConfig's."""
    recipe = recipe_for(model)
    return make_config(recipe.options, {"model": model, **recipe.defaults, **settings})


def read_config(values: dict[str, Any]) -> TrainConfig:
    """The config of a ``config.json``. Options of other recipes (written by versions before
    recipes had options of their own) are dropped."""
    model = values.get("model", "vae")
    return make_config(recipe_for(model).options, values, ignore=option_names())
