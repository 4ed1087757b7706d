"""The one registry of recipes, keyed by model name, and the configs they read.

A built-in family is found here, not listed: every module of :mod:`pyrovae.runs.recipes` is
imported, and each :class:`~pyrovae.runs.recipe.Recipe` subclass it defines with a ``name`` of
its own is registered under that name (a new family is its recipe file, and this module does
not change). Any other name with a colon is a user's factory (``package.module:function``,
:mod:`pyrovae.runs.recipes.factory`).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from types import ModuleType
from typing import Any

from . import recipes
from .config import TrainConfig, make_config
from .recipe import Recipe
from .recipes.factory import FactoryRecipe


def defined_recipes(module: ModuleType) -> list[type[Recipe]]:
    """The recipe classes ``module`` defines that name a model: subclasses of
    :class:`~pyrovae.runs.recipe.Recipe` with a ``name`` in their own body (a shared base
    such as ``ObservedRecipe`` has none), in the order they are defined. The factory recipe
    is not one: it takes every other name."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Recipe)
        and value.__module__ == module.__name__
        and "name" in vars(value)
        and value is not FactoryRecipe
    ]


#: The order ``--help`` and the "Built-in models" message listed the families in before the
#: registry found them itself (the default, ``vae``, first); a family not named here follows
#: them by name, so a new one needs no line in this module.
LISTED_FIRST = ("vae", "ae", "gmm", "mixture-vae", "ssvae", "adgm", "sdgm", "seqvae", "dmm")


def _listing_order(name: str) -> tuple[int, str]:
    first = LISTED_FIRST.index(name) if name in LISTED_FIRST else len(LISTED_FIRST)
    return first, name


def discover() -> dict[str, Recipe]:
    """{model name: recipe} of every recipe module, in :data:`LISTED_FIRST`'s order, then by
    name; two recipes of one name are a mistake in the package, refused here."""
    found: dict[str, Recipe] = {}
    for info in pkgutil.iter_modules(recipes.__path__):
        module = importlib.import_module(f"{recipes.__name__}.{info.name}")
        for cls in defined_recipes(module):
            if cls.name in found:
                raise RuntimeError(
                    f"two recipes are named {cls.name!r}: {type(found[cls.name]).__qualname__} "
                    f"and {cls.__module__}.{cls.__qualname__}; rename one"
                )
            found[cls.name] = cls()
    return {name: found[name] for name in sorted(found, key=_listing_order)}


RECIPES: dict[str, Recipe] = discover()
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
