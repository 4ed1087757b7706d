"""Pyro's ``loss`` and ``loss_and_grads`` for ELBOs defined by their ``differentiable_loss``."""

from __future__ import annotations

from collections.abc import Callable

import torch


class LossFromDifferentiableLoss:
    """Mixin: ``loss`` (a float, no graph) and ``loss_and_grads`` (backward on the same
    tensor) from ``differentiable_loss``, so the ELBO also works under ``pyro.infer.SVI``."""

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss.detach())
