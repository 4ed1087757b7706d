"""``pyrovae train package.module:function``: a user's own (model, guide) pair.

The factory is imported (from the working directory, as ``python -m`` would, or from
``sys.path``) and called with no registration. It receives, by keyword, whichever of these its
signature names: ``input_dim``, ``latent_dim``, ``hidden_dims``, ``image_shape``, ``data`` (a
:class:`~pyrovae.data.DataSplits`), ``config`` (the :class:`~pyrovae.runs.TrainConfig`); it
returns ``(model, guide)`` or ``(model, guide, data)``, where data is a DataSplits, a tensor
x (N, D) or a tuple (x, y) of tensors (split into train/test by the run's seed).

A factory's model brings its own density: ``--likelihood`` and ``--binarize`` only decide how
the data are prepared, and a factory may read them from its config argument. Data a factory
returns are kept in the run directory (:data:`~pyrovae.runs.record.DATA_COPY`, and
``config.json``'s ``dataset`` says "(factory data)"), so that the run reopens on the same rows
without calling the factory for data again.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ...data import DataSplits, split_arrays
from ..config import TrainConfig
from ..data import load_data
from ..recipe import Built
from .observed import ARCHITECTURE, BETA, ObservedOptions, ObservedRecipe, beta_clause

FACTORY_ARGUMENTS = ("input_dim", "latent_dim", "hidden_dims", "image_shape", "data", "config")
#: How ``config.dataset`` marks a run whose data its factory returned.
FACTORY_SUFFIX = "(factory data)"


class ModelSpecError(ValueError):
    """The model name or factory cannot give a (model, guide) pair."""


@dataclass(frozen=True)
class FactoryOptions(ObservedOptions):
    """What a factory may read from its config: the VAE's options."""

    architecture: str = ARCHITECTURE
    beta: float = BETA


def load_factory(
    spec: str, known: tuple[str, ...] = (), code_path: tuple[str, ...] | None = None
) -> Callable:
    """Import ``"package.module:function"``; errors say what is wrong and what is accepted
    (``known``: the built-in model names).

    ``code_path`` None (training: the user runs their own code): the working directory is
    searched first, as ``python -m`` does. A tuple (a run reopened: its config.json names the
    factory): only the installed environment and those directories, never the working
    directory or the run directory implicitly."""
    if ":" not in spec:
        raise ModelSpecError(
            f"unknown model {spec!r}. Built-in models: {', '.join(known)}; "
            "or give your own factory as package.module:function"
        )
    module_name, _, attr = spec.partition(":")
    try:
        if code_path is None:
            module = _import_from_working_directory(module_name)
        else:
            module = _import_from(module_name, code_path)
    except ImportError as e:
        if code_path is not None:
            raise ModelSpecError(
                f"cannot import {module_name!r} for the model factory {spec!r} that this run "
                f"names: {e}. Reopening a run imports its factory only from the installed "
                "environment or from --factory-path DIR (the directory that holds it); pass "
                "that if you trust its code"
            ) from e
        raise ModelSpecError(
            f"cannot import {module_name!r} for the model factory {spec!r}: {e}. Run from the "
            "directory that holds it, or add that directory to PYTHONPATH"
        ) from e
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelSpecError(f"{module_name!r} has no callable {attr!r} (from the model {spec!r})")
    return factory


def _import_from_working_directory(module_name: str):
    """Import a module, looking in the working directory first. The installed ``pyrovae``
    command, unlike ``python -m``, does not put that directory on ``sys.path``; it is put
    first there, as Flask and Uvicorn do for their ``module:attribute`` specs, and stays so
    that the module's own later imports of its neighbours work too."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def _import_from(module_name: str, code_path: tuple[str, ...]):
    """Import a module from the installed environment or ``code_path``, with the working
    directory (``""`` or its path, which ``python -m`` puts on ``sys.path``) left out."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    cwd = os.getcwd()
    saved = list(sys.path)
    extra = [str(Path(p).expanduser().resolve()) for p in code_path]
    kept = [p for p in saved if p not in ("", ".", cwd) or p in extra]
    sys.path[:] = [*extra, *kept]
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path[:] = saved


def _check_pair(spec: str, result: object) -> tuple[Callable, Callable, object]:
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        raise ModelSpecError(
            f"the factory {spec} returned {type(result).__name__}; it must return a tuple "
            "(model, guide) or (model, guide, data)"
        )
    model, guide = result[:2]
    for role, program in (("model", model), ("guide", guide)):
        if not callable(program):
            raise ModelSpecError(
                f"the factory {spec} returned a {role} of type {type(program).__name__}, which is "
                "not callable; a model and a guide are Pyro programs (functions or PyroModules)"
            )
    return model, guide, result[2] if len(result) == 3 else None


def _as_splits(spec: str, data: object, config: TrainConfig) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    split = dict(seed=config.seed, test_fraction=config.test_fraction)
    if isinstance(data, torch.Tensor):
        return split_arrays(data.numpy(), None, spec, **split)
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        x, y = data
        return split_arrays(x.numpy(), y.numpy(), spec, **split)
    raise ModelSpecError(
        f"the factory {spec} returned data of type {type(data).__name__}; data must be a "
        "pyrovae.data.DataSplits, a tensor x of shape (N, D) or a tuple (x, y) of tensors"
    )


class FactoryRecipe(ObservedRecipe):
    """A user's ``module:function`` pair, trained as a VAE is (objective from the program)."""

    name = "package.module:function"
    summary = "your own factory returning (model, guide) or (model, guide, data)"
    options = FactoryOptions

    def __init__(self, known: tuple[str, ...] = ()) -> None:
        self.known = known  # the built-in model names, for the error on a name that is neither

    def build(
        self,
        config: TrainConfig,
        saved: DataSplits | None = None,
        code_path: tuple[str, ...] | None = None,
    ) -> Built:
        """Call the factory with what its signature asks for; data come from ``saved`` (a
        reopened run's copy), else from ``--dataset`` when the factory needs them before it
        runs, else from what it returns, else from ``--dataset``."""
        factory = load_factory(config.model, self.known, code_path)
        module = sys.modules.get(config.model.partition(":")[0])
        code = f"factory {config.model} from {getattr(module, '__file__', None) or 'its module'}"
        wanted = set(inspect.signature(factory).parameters) & set(FACTORY_ARGUMENTS)
        data, messages = saved, []
        if data is None and wanted & {"input_dim", "image_shape", "data"}:
            data = load_data(config)
        if data is not None:
            config, messages = self.prepare(config, data)
        available = {
            "input_dim": config.input_dim,
            "latent_dim": config.latent_dim,
            "hidden_dims": tuple(config.hidden_dims),
            "image_shape": tuple(config.image_shape) if config.image_shape else None,
            "data": data,
            "config": config,
        }
        try:
            result = factory(**{k: available[k] for k in wanted})
        except ValueError as e:  # the factory refusing these settings, in its own words
            raise ModelSpecError(f"the factory {config.model} refused the settings: {e}") from e
        model, guide, own_data = _check_pair(config.model, result)
        keep = own_data is not None and saved is None
        if keep:
            data = _as_splits(config.model, own_data, config)
            config = config.replace(dataset=f"{config.model} {FACTORY_SUFFIX}")
            config, messages = self.prepare(config, data)
        elif data is None:
            data = load_data(config)
            config, messages = self.prepare(config, data)
        return Built(config, model, guide, data, tuple(messages), keep_data=keep, code=code)

    def resolve(self, config: TrainConfig, data: DataSplits) -> tuple[TrainConfig, list[str]]:
        """The likelihood and binarization decide only how the data are prepared: the
        factory's model brings its own density."""
        config, (resolved,) = super().resolve(config, data)
        treatment = (
            "training images binarized dynamically, test images once (seed 0)"
            if config.binarize == "dynamic"
            else "the data used as they are"
        )
        return config, [
            f"data for the factory's own model: {treatment} ({resolved}; --likelihood and "
            "--binarize decide this, and a factory may read them from its config argument)",
        ]

    def units(self, config: TrainConfig) -> str:
        return beta_clause(config.beta)
