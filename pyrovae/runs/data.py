"""A run's data: loaded by name, copied into the run where no name reloads it, and the
likelihood and binarization resolved from it.

:func:`resolve_likelihood` is shared by the recipes whose models observe x through one of
:data:`pyrovae.likelihoods.LIKELIHOODS` (vae, ae, ssvae, a factory's data treatment).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..data import (
    FILE_EXTENSIONS,
    DataError,
    DataSplits,
    binarize_fixed,
    check_array_file,
    load_dataset,
)
from ..likelihoods import check_support
from .config import TrainConfig
from .record import open_regular


def load_data(config: TrainConfig, *, sequences: bool = False) -> DataSplits:
    """The dataset ``config.dataset`` names, split as the config says; ``sequences`` for a
    recipe whose model takes sequences (N, T, D) with lengths."""
    return load_dataset(
        config.dataset,
        config.data_dir,
        seed=config.seed,
        test_fraction=config.test_fraction,
        download=config.download,
        sequences=sequences,
    )


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """--data-dir and a data file as absolute paths, so that the run reloads from anywhere."""
    changes = {}
    if config.data_dir:
        changes["data_dir"] = str(Path(config.data_dir).expanduser().resolve())
    dataset = Path(config.dataset).expanduser()
    if dataset.suffix.lower() in FILE_EXTENSIONS:
        changes["dataset"] = str(dataset.resolve())
    return config.replace(**changes)


def with_shape(config: TrainConfig, data: DataSplits) -> TrainConfig:
    """The config with the input dimension and image shape of ``data``."""
    shape = tuple(data.image_shape) if data.image_shape else None
    return config.replace(input_dim=data.input_dim, image_shape=shape)


def describe(data: DataSplits) -> str:
    if data.is_sequences:
        lengths = data.train_lengths
        return (
            f"data: {data.name}, {len(data.train_x)} train / {len(data.test_x)} test sequences "
            f"of {int(lengths.min())} to {int(lengths.max())} steps (mean "
            f"{float(lengths.float().mean()):.1f}) of dimension {data.input_dim}"
        )
    return (
        f"data: {data.name}, {len(data.train_x)} train / {len(data.test_x)} test examples "
        f"of dimension {data.input_dim}"
    ) + (f", with {len(data.train_args)} further model argument(s)" if data.train_args else "")


def save_splits(path: str | Path, data: DataSplits) -> Path:
    """Write the splits as a pickle-free ``.npz``, atomically: ``train_x``, ``test_x``, the
    labels, lengths and image shape where there are any, and the programs' further
    arguments as ``train_args_0``, ``test_args_0``, ... (numeric or boolean arrays)."""
    arrays = {"train_x": data.train_x.cpu().numpy(), "test_x": data.test_x.cpu().numpy()}
    for key in ("train_y", "test_y", "train_lengths", "test_lengths"):
        value = getattr(data, key)
        if value is not None:
            arrays[key] = value.cpu().numpy()
    if data.image_shape is not None:
        arrays["image_shape"] = np.asarray(data.image_shape, dtype=np.int64)
    for split in ("train", "test"):  # the programs' further arguments, each as it is
        for i, arg in enumerate(getattr(data, f"{split}_args")):
            arrays[f"{split}_args_{i}"] = arg.detach().cpu().numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def load_splits(path: str | Path, name: str) -> DataSplits:
    """The splits :func:`save_splits` wrote (read without unpickling anything)."""
    with open_regular(path) as f:
        try:
            check_array_file(f, path)
        except (ValueError, zipfile.BadZipFile) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: cannot read it ({e}); the run directory is damaged") from e
        f.seek(0)
        with np.load(f, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}

    def tensor(key: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[key]) if key in arrays else None

    shape = arrays.get("image_shape")
    count = sum(1 for key in arrays if key.startswith("train_args_"))
    args = {
        split: tuple(torch.from_numpy(arrays[f"{split}_args_{i}"]) for i in range(count))
        for split in ("train", "test")
    }
    return DataSplits(
        name,
        tensor("train_x"),
        tensor("test_x"),
        tensor("train_y"),
        tensor("test_y"),
        tuple(int(v) for v in shape) if shape is not None else None,
        train_lengths=tensor("train_lengths"),
        test_lengths=tensor("test_lengths"),
        train_args=args["train"],
        test_args=args["test"],
    )


@dataclass(frozen=True)
class Likelihood:
    """The resolved ``--likelihood`` and ``--binarize``, and why (one line for the log)."""

    likelihood: str
    binarize: str
    why: str


def resolve_likelihood(likelihood: str, binarize: str, data: DataSplits) -> Likelihood:
    """Resolve ``auto`` settings from the data, and check the data fit the likelihood.

    ``auto`` picks: Bernoulli for binary data; Bernoulli on dynamically binarized images for
    MNIST (the benchmark convention); the continuous Bernoulli for other data in [0, 1];
    a Gaussian otherwise. ``binarize auto`` resamples grey values for a Bernoulli.
    """
    unit = data.is_unit_interval
    if likelihood == "auto":
        if data.is_binary:
            likelihood, why = "bernoulli", "the data are binary"
        elif unit and data.name == "mnist":
            likelihood = "bernoulli"
            why = "MNIST grey levels are binarized dynamically, the benchmark convention"
        elif unit:
            likelihood = "continuous-bernoulli"
            why = (
                "the data take values in [0, 1] besides 0 and 1, where a Bernoulli is not a density"
            )
        else:
            likelihood, why = "gaussian", "the data are real-valued, outside [0, 1]"
    else:
        why = "as requested"
    if binarize == "auto":
        grey = likelihood == "bernoulli" and not data.is_binary
        binarize = "dynamic" if grey and unit else "none"
    if binarize == "dynamic":
        if likelihood != "bernoulli":
            raise ValueError("--binarize dynamic goes with --likelihood bernoulli")
        if not unit:
            raise ValueError(
                "--binarize dynamic needs values in [0, 1] (pixel intensities as probabilities); "
                "rescale the data first"
            )
        why += "; training images resampled each epoch, test images binarized once (seed 0)"
    else:
        check_support(likelihood, data.train_x)
        check_support(likelihood, data.test_x)
    return Likelihood(likelihood, binarize, why)


def binarized_test_inputs(binarize: str, data: DataSplits) -> torch.Tensor:
    """The test rows as a model with this binarization sees them (binarized once, seed 0)."""
    return binarize_fixed(data.test_x, seed=0) if binarize == "dynamic" else data.test_x


def dynamic_binarization(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A new 0/1 draw of every training image, x ~ Bernoulli(grey levels), each epoch."""
    return torch.bernoulli(x, generator=generator)
