"""Scales as Pyro's subsample idiom sets them, and the unscaled model that evaluation scores.

**A minibatch as a subsample.** Pyro trains a global latent theta on minibatches with a
subsampled plate, ``pyro.plate("data", N, subsample=rows)``: every site inside the plate is
scaled by N / B (``pyro.poutine.subsample_messenger._SubsampleMessenger``), so one step's loss

    -[ (N / B) sum_{n in batch} E_q log p(x_n, z_n | theta) / q(z_n | x_n)
       + E_q log p(theta) / q(theta) ]

is an unbiased estimate of the full-data negative ELBO, the prior and KL of theta counted
once per N rows, not once per minibatch. :class:`DataPlateScale` applies that scale to the
sites of a program whose data plate is sized by the batch (``pyro.plate("data",
x.shape[0])``, as pyrovae's contract asks), so :class:`~pyrovae.infer.Trainer` trains a
program with global latents on minibatches as Pyro's idiom trains it; a test checks the
loss equals ``Trace_ELBO`` of the same program written with Pyro's subsampled plate.

**The unscaled model.** ``poutine.scale``, a subsampled plate and a beta-VAE's weight are
training devices. A per-example number (the test ELBO, log p(x)) is of the model without
them: :class:`Unscaled` resets every sample site's scale to 1 after the program's own
handlers have set it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pyro.poutine.messenger import Messenger

from .batches import Data, count_rows


class DataPlateScale(Messenger):
    """Multiply the scale of every sample site inside the plate ``plate`` by ``rows / B``,
    B the plate's size at that site (the batch's rows): Pyro's ``plate(plate, rows,
    subsample=...)`` scale. Wrap the program from outside (the plate's frame is then on each
    site's stack when this messenger sees it)."""

    def __init__(self, plate: str, rows: int) -> None:
        super().__init__()
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        self.plate = plate
        self.rows = rows

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        for frame in msg["cond_indep_stack"]:
            if frame.name == self.plate:
                msg["scale"] = msg["scale"] * (self.rows / frame.size)
                return


class Unscaled(Messenger):
    """Every sample site's scale reset to 1: the program's density without the scales that
    ``poutine.scale`` or a subsampled plate put on it. Wrap the program from outside."""

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            msg["scale"] = 1.0


def wrapped(program: Callable, *messengers: Messenger) -> Callable:
    """``program`` run inside ``messengers`` (the first outermost), its original kept as
    ``__wrapped__`` so pyrovae's tools still find its modules."""

    def run(*args, **kwargs):
        call = program
        for messenger in reversed(messengers):
            call = messenger(call)
        return call(*args, **kwargs)

    run.__wrapped__ = program  # type: ignore[attr-defined]
    return run


def unscaled(program: Callable) -> Callable:
    """``program`` with every sample site's scale 1 (:class:`Unscaled`)."""
    return wrapped(program, Unscaled())


def training_rows(batches: Any, data: Data, global_latents: Sequence[str]) -> int:
    """N, the training rows of one pass over all ranks: the full data a minibatch of a
    program with ``global_latents`` is a subsample of (``batches.num_examples`` where the
    batches know it, else the rows of ``data``)."""
    rows = getattr(batches, "num_examples", None) or count_rows(data)
    if rows is None:
        raise ValueError(
            f"the program has global latents {list(global_latents)}, and pyrovae trains them "
            "with each minibatch scaled as a subsample of the N training rows, but the number "
            "of rows of this data cannot be counted: pass tensors, a Dataset with a length, or "
            "a DataLoader over one"
        )
    return int(rows)


__all__ = ["DataPlateScale", "Unscaled", "training_rows", "unscaled", "wrapped"]
