"""The configuration of a training run: what ``pyrovae train`` turns its arguments into.

Saved as ``config.json`` in the run directory, with the settings that were resolved
from the data (likelihood, binarization, input shape), so a run can be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .models.mixture import COVARIANCE_TYPES


@dataclass
class TrainConfig:
    """Settings of one run; every field has a ``pyrovae train`` option of the same name."""

    model: str = "vae"
    out: str = "runs/vae"
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    test_fraction: float = 0.2
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    latent_dim: int = 10
    hidden_dims: list[int] = field(default_factory=lambda: [400])
    architecture: str = "mlp"
    likelihood: str = "auto"
    binarize: str = "auto"
    beta: float = 1.0
    objective: str = "auto"  # resolved from the program when training starts
    num_particles: int = 1
    dreg: bool = False
    capture: bool = True
    seed: int = 0
    device: str = "cpu"
    figures: bool = True
    # Gaussian mixture (model "gmm").
    components: list[int] = field(default_factory=lambda: [10])
    covariance: str = "full"
    inference: str = "em"
    n_init: int = 1
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    # Semi-supervised VAE (model "ssvae").
    num_labels: int | None = 100  # None: every training example keeps its label
    alpha: float = 50.0
    validation_size: int | None = None  # None: a sixth of the training rows, at most 10,000
    # Resolved from the data when the run starts.
    input_dim: int | None = None
    image_shape: list[int] | None = None
    num_components: int | None = None  # gmm: the K that --components selected (by BIC)
    num_classes: int | None = None  # ssvae: C, from the labels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        return cls(**values)

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.latent_dim >= 1, f"--latent-dim must be at least 1, got {self.latent_dim}"),
            (
                all(h >= 1 for h in self.hidden_dims),
                f"--hidden must be positive widths, got {self.hidden_dims}",
            ),
            (self.beta > 0, f"--beta must be positive, got {self.beta}"),
            (self.num_particles >= 1, f"--particles must be at least 1, got {self.num_particles}"),
            (not self.dreg or self.objective == "iwae", "--dreg goes with --objective iwae"),
            (
                bool(self.components) and all(k >= 1 for k in self.components),
                f"--components must be positive integers, got {self.components}",
            ),
            (
                self.covariance in COVARIANCE_TYPES,
                f"--covariance must be full, tied, diag or spherical, got {self.covariance!r}",
            ),
            (
                self.inference in ("em", "svi"),
                f"--inference must be em or svi, got {self.inference!r}",
            ),
            (self.n_init >= 1, f"--n-init must be at least 1, got {self.n_init}"),
            (self.max_iter >= 1, f"--max-iter must be at least 1, got {self.max_iter}"),
            (self.tol >= 0, f"--tol must be >= 0, got {self.tol}"),
            (self.reg_covar >= 0, f"--reg-covar must be >= 0, got {self.reg_covar}"),
            (
                self.num_labels is None or self.num_labels >= 1,
                f"--num-labels must be at least 1, got {self.num_labels}",
            ),
            (self.alpha >= 0, f"--alpha must be >= 0, got {self.alpha}"),
            (
                self.validation_size is None or self.validation_size >= 1,
                f"--validation-size must be at least 1, got {self.validation_size}",
            ),
            (
                self.model != "ssvae" or self.architecture == "mlp",
                "--architecture conv is not available for ssvae (its networks read "
                "[x, one_hot(y)] and [z, one_hot(y)]); use --architecture mlp",
            ),
            (
                0 < self.test_fraction < 1,
                f"--test-fraction must be in (0, 1), got {self.test_fraction}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
