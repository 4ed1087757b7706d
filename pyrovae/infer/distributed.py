"""Training across processes with PyTorch's own engine: ``torch.distributed`` and
``DistributedDataParallel`` (DDP), as ``torchrun`` launches them.

pyrovae starts no process and opens no connection: under ``torchrun`` (or any launcher
that calls ``torch.distributed.init_process_group``) it finds the process group and

- gives each rank a disjoint shard of every global batch (:func:`shard_bounds`), so
  R ranks with batch B together take the steps of one process with batch R B;
- wraps the loss in :class:`DistributedDataParallel` (:class:`LossModule`), which averages
  the gradients over the ranks during the backward pass (gloo on CPUs, NCCL on GPUs);
- sums the epoch's totals over the ranks (:func:`all_reduce_sums`), so every rank records
  the same per-example ELBO, and only rank 0 shows a progress bar.

With gradients averaged, each rank's loss is scaled by R / (rows of the global batch): the
average of the ranks' gradients is then the gradient of the global batch's summed loss over
its rows, exactly what one process computes on that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..ranks import collective_device, shard_bounds, world


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that shows and writes."""
    return world()[0] == 0


def all_reduce_sums(values: Sequence[float], device: torch.device | str | None = None) -> list:
    """The sums over ranks of ``values`` (floats), in float64; the values themselves when
    no process group is initialised."""
    if world()[1] == 1:
        return [float(v) for v in values]
    device = collective_device() if device is None else device
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


class LossModule(nn.Module):
    """A loss callable as a module that owns the programs' modules, so that
    ``DistributedDataParallel(LossModule(...))`` sees every trained parameter and averages
    its gradient: ``forward(*batch)`` returns ``loss(*batch)``."""

    def __init__(self, loss: Callable[..., torch.Tensor], modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.programs = nn.ModuleList(modules)
        self.__dict__["_loss"] = loss  # a plain attribute: its own modules are ours already

    def forward(self, *args: Any) -> torch.Tensor:
        return self._loss(*args)


def data_parallel(
    loss: Callable[..., torch.Tensor],
    modules: Sequence[nn.Module],
    params: Sequence[torch.Tensor],
    device: torch.device | str | None = None,
    find_unused: bool = False,
) -> nn.Module:
    """``DistributedDataParallel`` around ``loss`` and the modules that own ``params``.

    DDP broadcasts rank 0's parameters and buffers to every rank when it is built, so all
    ranks start from the same point. ``find_unused`` makes it look for the parameters a
    step's loss leaves out (an extra pass over the graph each step): needed when some
    parameter gets no gradient from a batch (:class:`~pyrovae.infer.trainer.Trainer` probes its
    first batch for that).

    Raises:
        ValueError: a trained parameter lives outside ``modules`` (a ``pyro.param`` in
            Pyro's store): DDP can average only module parameters.
    """
    owned = {id(p) for m in modules for p in m.parameters()}
    if any(id(p) not in owned for p in params):
        raise ValueError(
            "under torch.distributed every trained parameter must belong to the model's or "
            "the guide's torch module (a PyroModule or an nn.Module registered with "
            "pyro.module), so that DistributedDataParallel can average its gradient; this "
            "pair has parameters in Pyro's param store (pyro.param) outside them"
        )
    module = LossModule(loss, modules)
    device = torch.device(device) if device is not None else None
    ids = [device] if device is not None and device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused
    )


__all__ = [
    "LossModule",
    "all_reduce_sums",
    "data_parallel",
    "is_main_process",
    "shard_bounds",
    "world",
]
