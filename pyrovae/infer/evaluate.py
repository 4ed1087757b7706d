"""The ELBO of held-out data: :func:`~pyrovae.infer.evaluate_elbo`, one sample per example."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.infer import ELBO

from .batches import Data, count_rows, make_batches
from .distributed import all_reduce_sums, shard_bounds, world
from .modes import evaluated
from .objectives import make_objective
from .subsample import DataPlateScale, Unscaled, wrapped


@evaluated
@torch.no_grad()
def evaluate_elbo(
    model: Callable,
    guide: Callable,
    data: Data,
    *,
    objective: str | ELBO = "elbo",
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    global_plate: str | None = None,
) -> float:
    """Mean per-example ELBO (nats) of ``data`` under (model, guide): one-sample estimate.

    The ELBO is of the unscaled model (:class:`~pyrovae.infer.subsample.Unscaled`):
    ``poutine.scale`` and a subsampled plate are training devices, and the number is each
    example's own bound. ``global_plate`` (the data plate of a program with global latents)
    weighs each batch of B of the N rows as a subsample (sites in the plate scaled by N / B,
    the batch's loss by B / N), so the result is the full-data ELBO per example with the
    global latents' KL counted once, not once per batch.

    Under torch.distributed, in-memory tensors are split over the ranks (contiguous shares)
    and the sums are added up across them; every rank returns the same value.
    """
    elbo = make_objective(objective)
    rank, ranks = world()
    rows = count_rows(data)
    if global_plate is not None:
        if rows is None:
            raise ValueError(
                "a program with global latents is evaluated on data whose rows can be counted "
                "(tensors, a Dataset or a DataLoader over one)"
            )
        scale = DataPlateScale(global_plate, rows)
        model, guide = wrapped(model, scale, Unscaled()), wrapped(guide, scale, Unscaled())
    else:
        model, guide = wrapped(model, Unscaled()), wrapped(guide, Unscaled())
    if ranks > 1 and isinstance(data, torch.Tensor):
        data = (data,)
    if ranks > 1 and isinstance(data, (tuple, list)):
        start, stop = shard_bounds(data[0].shape[0], rank, ranks)
        data = tuple(t[start:stop] for t in data)
    total, count = 0.0, 0
    if ranks == 1 or data[0].shape[0] > 0:
        for args in make_batches(data, batch_size, shuffle=False, device=device):
            loss = elbo.loss(model, guide, *args)
            if global_plate is not None:
                loss = loss * args[0].shape[0] / rows
            total -= loss
            count += args[0].shape[0]
    total, count = all_reduce_sums([total, count])
    return total / count
