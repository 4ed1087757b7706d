"""Step decay of the learning rate: the schedule :class:`~pyrovae.infer.Trainer` follows.

Epoch e (counted from 0) trains each parameter group at

    lr_e = lr_0 * decay ** floor(e / every),

lr_0 the group's rate when the optimizer was made (VaDE's schedule is ``decay=0.9,
every=10``). The rate is a function of the epoch count alone, so a resumed run, whose
optimizer state holds the decayed rate, continues the same schedule. It equals
``torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=decay)`` stepped once
per epoch (a test checks the equality); unlike ``StepLR`` it keeps no state of its own to save.
"""

from __future__ import annotations

import torch


class StepDecay:
    """lr_e = lr_0 * decay ** floor(e / every) for each group of ``optimizer``.

    Args:
        optimizer: its groups' current rates are taken as lr_0.
        decay: the factor per step, in (0, 1]; 1 leaves the rates constant.
        every: epochs between two steps, at least 1.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float = 1.0, every: int = 1):
        if not 0 < decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {decay}")
        if every < 1:
            raise ValueError(f"lr_decay_epochs must be at least 1, got {every}")
        self.optimizer, self.decay, self.every = optimizer, decay, every
        #: Each parameter group's learning rate before any decay (lr_0).
        self.initial = [float(group["lr"]) for group in optimizer.param_groups]

    @property
    def constant(self) -> bool:
        """True when the rates never change (``decay == 1``)."""
        return self.decay == 1

    def set_epoch(self, epoch: int) -> None:
        """Set each group's rate for ``epoch`` (from 0). A tensor rate is changed in place,
        as a captured optimizer step may read it."""
        factor = self.decay ** (epoch // self.every)
        for group, lr in zip(self.optimizer.param_groups, self.initial, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr * factor)
            else:
                group["lr"] = lr * factor
