"""The parameters a (model, guide) pair trains, and the optimizer over them.

:func:`collect_params` finds them (modules' own, and Pyro's store for programs in the classic
``pyro.param`` style) from one traced loss; :func:`adam` is the default optimizer;
:func:`unused_parameters` says whether a batch's loss leaves one without a gradient (what
DistributedDataParallel must be told); :func:`module_state` is what a checkpoint keeps of a
program.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from ..rng import initialised_cuda_devices


def collect_params(
    elbo: ELBO, model: Callable, guide: Callable, args: tuple
) -> tuple[list[torch.Tensor], list[str]]:
    """Every trainable tensor of a (model, guide) pair, and the names of those in Pyro's store.

    Modules' own parameters come from ``.parameters()``; parameters of programs in Pyro's
    classic style (``pyro.param`` / ``pyro.module``) from one traced evaluation of the loss,
    run under a forked RNG so that collecting changes no random stream.
    """
    params: dict[int, torch.Tensor] = {}
    for program in (model, guide):
        while hasattr(program, "__wrapped__"):  # see through scale_latents, enumerate_sites
            program = program.__wrapped__
        if isinstance(program, torch.nn.Module):
            params.update((id(p), p) for p in program.parameters())
    store = pyro.get_param_store()
    store_names = []
    with torch.random.fork_rng(devices=initialised_cuda_devices()):
        with poutine.trace(param_only=True) as capture:
            elbo.differentiable_loss(model, guide, *args)
    for site in capture.trace.nodes.values():
        value = site["value"]
        unconstrained = value.unconstrained() if hasattr(value, "unconstrained") else value
        if isinstance(unconstrained, torch.Tensor) and unconstrained.requires_grad:
            params.setdefault(id(unconstrained), unconstrained)
            name = store.param_name(unconstrained)
            if name is not None:
                store_names.append(name)
    return list(params.values()), sorted(set(store_names))


def adam(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam(lr) with torch's default betas and eps, fused into one kernel per step where
    every parameter is a floating-point tensor on one CPU or CUDA device (the same update
    to float tolerance, without the per-tensor Python loop of the default implementation).
    """
    devices = {p.device for p in params}
    fused = (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in params)
    )
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def unused_parameters(
    elbo: ELBO, model: Callable, guide: Callable, args: tuple, params: list[torch.Tensor]
) -> bool:
    """Whether the loss of the batch ``args`` leaves one of ``params`` without a gradient
    (evaluated off the random stream); DistributedDataParallel must be told."""
    with torch.random.fork_rng(devices=initialised_cuda_devices()):
        loss = elbo.differentiable_loss(model, guide, *args)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return any(g is None for g in grads)


def module_state(program: Callable) -> dict[str, torch.Tensor]:
    """A program's ``state_dict`` (a torch module's), or {} for a plain function."""
    return program.state_dict() if isinstance(program, torch.nn.Module) else {}
