"""From a model name to a (model, guide) pair: built-in families and users' factories.

``pyrovae train vae`` builds a built-in pair; ``pyrovae train mypkg.mymodule:factory``
imports ``factory`` and calls it, with no registration (from the working directory, as
``python -m`` would, or from ``sys.path``). A factory receives, by
keyword, whichever of these its signature names: ``input_dim``, ``latent_dim``,
``hidden_dims``, ``image_shape``, ``data`` (a :class:`~pyrovae.data.DataSplits`),
``config`` (the :class:`~pyrovae.config.TrainConfig`); it returns ``(model, guide)``
or ``(model, guide, data)``, where data is a DataSplits, a tensor x (N, D) or a tuple
(x, y) of tensors (split into train/test by the run's seed).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write
from .config import TrainConfig
from .data import DataSplits, load_dataset, split_arrays
from .guides import DeltaEncoder, GaussianEncoder, SSVAEGuide
from .models import SSVAE, VAE, GaussianMixture, empty_guide

FACTORY_ARGUMENTS = ("input_dim", "latent_dim", "hidden_dims", "image_shape", "data", "config")


class ModelSpecError(ValueError):
    """The model name or factory cannot give a (model, guide) pair."""


@dataclass
class Built:
    model: Callable
    guide: Callable
    data: DataSplits


def _vae_kwargs(config: TrainConfig) -> dict:
    return dict(
        input_dim=config.input_dim,
        latent_dim=config.latent_dim,
        hidden_dims=tuple(config.hidden_dims),
        architecture=config.architecture,
        image_shape=tuple(config.image_shape) if config.image_shape else None,
    )


def build_vae(config: TrainConfig) -> tuple[VAE, GaussianEncoder]:
    """The VAE (or beta-VAE) and its Gaussian encoder."""
    kwargs = _vae_kwargs(config)
    model = VAE(likelihood=config.likelihood, beta=config.beta, **kwargs)
    return model, GaussianEncoder(**kwargs)


def build_autoencoder(config: TrainConfig) -> tuple[VAE, DeltaEncoder]:
    """The deterministic autoencoder: the VAE's decoder with a point-mass guide."""
    kwargs = _vae_kwargs(config)
    model = VAE(likelihood=config.likelihood, **kwargs)
    return model, DeltaEncoder(**kwargs)


def build_mixture(config: TrainConfig) -> tuple[GaussianMixture, Callable]:
    """The Gaussian mixture with K = ``num_components`` (or the first of ``components``) and
    the empty guide (its one latent, z, is enumerated)."""
    k = config.num_components or config.components[0]
    model = GaussianMixture(k, config.input_dim, config.covariance, reg_covar=config.reg_covar)
    return model, empty_guide


def build_ssvae(config: TrainConfig) -> tuple[SSVAE, SSVAEGuide]:
    """The semi-supervised VAE (M2) over ``num_classes`` classes and its guide: classifier
    q(y | x) and encoder q(z | x, y), MLPs with the widths of ``hidden_dims``."""
    kwargs = dict(
        input_dim=config.input_dim,
        num_classes=config.num_classes,
        latent_dim=config.latent_dim,
        hidden_dims=tuple(config.hidden_dims),
    )
    image_shape = tuple(config.image_shape) if config.image_shape else None
    model = SSVAE(likelihood=config.likelihood, image_shape=image_shape, **kwargs)
    return model, SSVAEGuide(**kwargs)


#: Built-in families: name -> (builder, one-line description).
BUILTIN_MODELS: dict[str, tuple[Callable[[TrainConfig], tuple], str]] = {
    "vae": (
        build_vae,
        "variational autoencoder: z ~ N(0, I), x ~ p(x | decoder(z)); --beta for beta-VAE",
    ),
    "ae": (
        build_autoencoder,
        "deterministic autoencoder baseline: the VAE's decoder, a point-mass guide",
    ),
    "gmm": (
        build_mixture,
        "Gaussian mixture: z ~ Categorical(pi), x ~ N(mu_z, Sigma_z); EM (default) or "
        "TraceEnum SVI; --components K1,K2,... picks K by BIC",
    ),
    "ssvae": (
        build_ssvae,
        "semi-supervised VAE (M2): y ~ Cat(1/C), z ~ N(0, I), x ~ p(x | decoder(z, y)); y "
        "observed for --num-labels examples, summed out for the rest",
    ),
}


def load_factory(spec: str) -> Callable:
    """Import ``"package.module:function"``; errors say what is wrong and what is accepted."""
    if ":" not in spec:
        raise ModelSpecError(
            f"unknown model {spec!r}. Built-in models: {', '.join(BUILTIN_MODELS)}; "
            "or give your own factory as package.module:function"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = _import_from_working_directory(module_name)
    except ImportError as e:
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
    if isinstance(data, torch.Tensor):
        return split_arrays(
            data.numpy(), None, spec, seed=config.seed, test_fraction=config.test_fraction
        )
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        x, y = data
        return split_arrays(
            x.numpy(), y.numpy(), spec, seed=config.seed, test_fraction=config.test_fraction
        )
    raise ModelSpecError(
        f"the factory {spec} returned data of type {type(data).__name__}; data must be a "
        "pyrovae.data.DataSplits, a tensor x of shape (N, D) or a tuple (x, y) of tensors"
    )


def load_data(config: TrainConfig) -> DataSplits:
    return load_dataset(
        config.dataset,
        config.data_dir,
        seed=config.seed,
        test_fraction=config.test_fraction,
        download=config.download,
    )


#: Where a run keeps the data its factory returned (train/test rows, labels, image shape), so
#: that evaluate, plot, sample and --resume reopen it on the same rows, not on a new call.
FACTORY_DATA = "factory_data.npz"
#: How ``config.dataset`` marks a run whose data its factory returned.
FACTORY_SUFFIX = "(factory data)"


def save_splits(path: str | Path, data: DataSplits) -> Path:
    """Write the splits as a pickle-free ``.npz``, atomically."""
    arrays = {"train_x": data.train_x.cpu().numpy(), "test_x": data.test_x.cpu().numpy()}
    for key in ("train_y", "test_y"):
        value = getattr(data, key)
        if value is not None:
            arrays[key] = value.cpu().numpy()
    if data.image_shape is not None:
        arrays["image_shape"] = np.asarray(data.image_shape, dtype=np.int64)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def load_splits(path: str | Path, name: str) -> DataSplits:
    """The splits :func:`save_splits` wrote (read without unpickling anything)."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}

    def tensor(key: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[key]) if key in arrays else None

    shape = arrays.get("image_shape")
    return DataSplits(
        name,
        tensor("train_x"),
        tensor("test_x"),
        tensor("train_y"),
        tensor("test_y"),
        tuple(int(v) for v in shape) if shape is not None else None,
    )


def build(
    config: TrainConfig,
    prepare: Callable[[TrainConfig, DataSplits], None],
    saved: DataSplits | None = None,
) -> Built:
    """Load the data and build the pair named by ``config.model``.

    ``prepare(config, data)`` fills in the settings resolved from the data (input shape,
    likelihood) before any network is built. ``saved`` is a reopened run's own copy of the
    data its factory returned (:data:`FACTORY_DATA`): the factory then builds the pair
    only, and what it returns as data is not used.
    """
    if config.model in BUILTIN_MODELS:
        data = load_data(config)
        prepare(config, data)
        model, guide = BUILTIN_MODELS[config.model][0](config)
        return Built(model, guide, data)
    factory = load_factory(config.model)
    wanted = set(inspect.signature(factory).parameters) & set(FACTORY_ARGUMENTS)
    data = saved
    if saved is not None:
        prepare(config, saved)
    elif wanted & {"input_dim", "image_shape", "data"}:
        data = load_data(config)
        prepare(config, data)
    available = {
        "input_dim": config.input_dim,
        "latent_dim": config.latent_dim,
        "hidden_dims": tuple(config.hidden_dims),
        "image_shape": tuple(config.image_shape) if config.image_shape else None,
        "data": data,
        "config": config,
    }
    model, guide, own_data = _check_pair(config.model, factory(**{k: available[k] for k in wanted}))
    if own_data is not None and saved is None:
        data = _as_splits(config.model, own_data, config)
        config.dataset = f"{config.model} {FACTORY_SUFFIX}"
        prepare(config, data)
    elif data is None:
        data = load_data(config)
        prepare(config, data)
    return Built(model, guide, data)
