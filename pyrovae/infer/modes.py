"""Training and evaluation modes of the torch modules inside a (model, guide) pair.

A module's ``training`` flag changes what it computes: dropout drops units only in training,
batch normalisation normalises by the batch's statistics in training and by its running ones
in evaluation. Evaluated in training mode, a model with dropout would be a different, random
density at every call, and its log p(x) a quiet wrong number. As in PyTorch's own loops,
:class:`~pyrovae.infer.Trainer` runs its steps with the pair in training mode, and every
evaluation (:func:`~pyrovae.infer.evaluate_elbo`, the test ELBO of each epoch,
:func:`~pyrovae.infer.log_marginal`, :func:`~pyrovae.infer.assign`) runs it in evaluation
mode; each restores every submodule's own flag afterwards, so a submodule a user froze in
evaluation mode stays so.

Modules are found in the programs themselves (through pyrovae's wrappers, ``__wrapped__``);
a function that calls ``pyro.module`` on a network inside has no module to switch, and keeps
whatever mode its network is in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def _modules(programs: tuple[Any, ...]) -> list[torch.nn.Module]:
    found: list[torch.nn.Module] = []
    for program in programs:
        while hasattr(program, "__wrapped__"):
            program = program.__wrapped__
        if isinstance(program, torch.nn.Module) and all(program is not m for m in found):
            found.append(program)
    return found


@contextmanager
def program_mode(*programs: Any, training: bool) -> Iterator[None]:
    """Every torch module among ``programs`` (and its submodules) in training mode
    (``training=True``) or evaluation mode inside the block; each submodule's own flag
    restored after."""
    saved = [(sub, sub.training) for module in _modules(programs) for sub in module.modules()]
    for module in _modules(programs):
        module.train(training)
    try:
        yield
    finally:
        for sub, flag in saved:
            sub.training = flag


def evaluated(fn: F) -> F:
    """Run ``fn(model, guide, ...)`` with model and guide in evaluation mode."""

    @functools.wraps(fn)
    def run(model: Any, guide: Any, *args: Any, **kwargs: Any) -> Any:
        with program_mode(model, guide, training=False):
            return fn(model, guide, *args, **kwargs)

    return run  # type: ignore[return-value]
