"""The semi-supervised families' procedure (M2, the ADGM, the SDGM), as ``pyrovae train
ssvae`` runs it (Kingma et al. 2014, section 4.1: a validation set held out of the training
data selects the model):

1. :func:`validation_split`: labelled rows held out of the training split (seeded), by
   default a sixth of it and at most 10,000 (MNIST's 50,000 / 10,000 split);
2. :func:`~pyrovae.data.split_labeled`: a class-balanced subset of the remaining rows keeps
   its labels, the others are used without them;
3. training with :class:`~pyrovae.infer.SemiSupervisedELBO` while :class:`ValidationSelection`
   scores argmax q(y | x) on the validation rows each epoch and keeps the model and guide of
   the best epoch.

Example:
    >>> import torch
    >>> from pyrovae.procedures import validation_split
    >>> split = validation_split(torch.zeros(60, 4), torch.arange(60) % 3, seed=0)
    >>> split.train_x.shape, split.valid_x.shape
    (torch.Size([50, 4]), torch.Size([10, 4]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..diagnostics.ssvae_figures import accuracy
from ..errors import option

#: The key of the validation accuracy in each epoch's record.
VALID_ACCURACY = "valid_accuracy"


def default_validation_size(num_train: int) -> int:
    """A sixth of the training rows, at most 10,000 (the 50,000 / 10,000 split of MNIST in
    Kingma et al. 2014)."""
    return min(num_train // 6, 10_000)


@dataclass(frozen=True)
class ValidationSplit:
    """Training rows (N - V, D) and labels, validation rows (V, D) and labels, and the indices
    of each into the rows split (ascending)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    train_index: torch.Tensor
    valid_index: torch.Tensor


def validation_split(
    x: torch.Tensor, y: torch.Tensor, size: int | None = None, seed: int = 0
) -> ValidationSplit:
    """Hold ``size`` labelled rows of x (N, D) with labels y (N,) out for validation: the
    first ``size`` of a permutation drawn with ``seed`` (numpy's ``default_rng``); by default
    :func:`default_validation_size`. Each part keeps the rows' order.

    Raises:
        ValueError: ``size`` leaves no row to validate on or none to train on.
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"{n} rows but {y.shape[0]} labels")
    size = default_validation_size(n) if size is None else size
    if not 1 <= size < n:
        raise ValueError(
            f"{option('validation_size', size)} must be between 1 and the {n - 1} training "
            "rows that leave one to train on"
        )
    order = np.random.default_rng(seed).permutation(n)
    valid = torch.as_tensor(np.sort(order[:size]))
    train = torch.as_tensor(np.sort(order[size:]))
    return ValidationSplit(x[train], y[train], x[valid], y[valid], train, valid)


class ValidationSelection:
    """Select the epoch whose guide classifies the validation rows best: a
    :class:`~pyrovae.infer.Trainer` metric (:meth:`metric`, the share of rows x (V, D) whose
    argmax q(y | x) is the label y (V,), recorded as ``valid_accuracy``) and a callback
    (:meth:`keep`) that keeps a copy of the model's and the guide's state whenever that
    accuracy beats every earlier epoch of the trainer's history (ties: the earlier epoch
    stays), and calls ``on_improve(trainer, epoch, accuracy)`` (e.g. to save it).
    :meth:`restore` puts the kept state back into the trainer's model and guide.

    Args:
        guide: the guide being trained; ``guide.predict(x)`` gives argmax q(y | x).
        x, y: the validation rows and their labels, as the programs see them.
        on_improve: called after a better epoch is kept.
        keep_state: hold a copy of that epoch's state in memory for :meth:`restore`; False
            where ``on_improve`` keeps it elsewhere (the CLI writes ``best.pt``).
    """

    def __init__(
        self,
        guide: Callable,
        x: torch.Tensor,
        y: torch.Tensor,
        on_improve: Callable[[Any, int, float], None] | None = None,
        keep_state: bool = True,
    ) -> None:
        self.guide = guide
        self.keep_state = keep_state
        self.x, self.y = x, y
        self.on_improve = on_improve
        #: The kept epoch (1-based) and its validation accuracy, or None before any.
        self.best_epoch: int | None = None
        self.best_accuracy: float | None = None
        self._kept: list[tuple[torch.nn.Module, dict[str, torch.Tensor]]] | None = None

    def metric(self, trainer: Any) -> dict[str, float]:
        """``{"valid_accuracy": share of validation rows classified right}``."""
        return {VALID_ACCURACY: accuracy(self.guide, self.x, self.y)}

    def keep(self, trainer: Any) -> None:
        """Keep this epoch's state if its accuracy beats every earlier epoch's."""
        history = trainer.history
        current = history[-1][VALID_ACCURACY]
        if all(current > record[VALID_ACCURACY] for record in history[:-1]):
            if self.keep_state:
                self._kept = [
                    (program, _copy(program.state_dict()))
                    for program in (trainer.model, trainer.guide)
                    if isinstance(program, torch.nn.Module)
                ]
            self.best_epoch, self.best_accuracy = trainer.epoch, current
            if self.on_improve is not None:
                self.on_improve(trainer, trainer.epoch, current)

    def restore(self) -> None:
        """Load the kept epoch's state into the model and the guide.

        Raises:
            RuntimeError: no epoch was kept in this process.
        """
        if self._kept is None:
            raise RuntimeError(
                "no epoch's state is held: pass metrics=[selection.metric] and "
                "callbacks=[selection.keep] to fit or Trainer, train at least one epoch, and "
                "leave keep_state=True"
            )
        for program, state in self._kept:
            program.load_state_dict(state)


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in state.items()}
