"""``pyrovae train`` under ``torchrun``: joining the process group the launcher describes.

``torchrun --nproc_per_node R -m pyrovae train ...`` starts R copies of the command with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their
environment. :func:`process_group` joins them into torch.distributed's default group (gloo
on CPUs, NCCL when the run's device is CUDA, each rank on GPU ``LOCAL_RANK``) for the length
of the command and leaves it afterwards; the training itself (sharded batches, averaged
gradients) is :class:`~pyrovae.infer.Trainer`'s. pyrovae launches nothing itself.

A collective waits at most :func:`collective_timeout` seconds (``PYROVAE_COLLECTIVE_TIMEOUT``,
default :data:`COLLECTIVE_TIMEOUT`, instead of torch's 30 minutes) for the other ranks: a rank
that is stopped or hung makes the others fail with one line naming the timeout and the rank
they waited for.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .record import RunError

#: Seconds a collective waits for the other ranks by default: longer than anything rank 0
#: does alone while the others wait (a checkpoint, the figures), far shorter than torch's 30
#: minutes.
COLLECTIVE_TIMEOUT = 300.0
TIMEOUT_VARIABLE = "PYROVAE_COLLECTIVE_TIMEOUT"


def collective_timeout() -> float:
    """Seconds a collective waits for the other ranks: ``PYROVAE_COLLECTIVE_TIMEOUT`` where
    set (a positive number), else :data:`COLLECTIVE_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return COLLECTIVE_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 1e7:  # NaN fails too
        raise RunError(
            f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got {text!r}; set it "
            f"to, say, {COLLECTIVE_TIMEOUT:g}"
        )
    return seconds


def launched_ranks() -> int:
    """WORLD_SIZE as a launcher such as torchrun sets it (1 when absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank_device(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher (one GPU per rank); any other
    device (``cpu``, an explicit ``cuda:N``) is kept."""
    if launched_ranks() > 1 and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


@contextmanager
def process_group(device: str) -> Iterator[None]:
    """Inside: torch.distributed's default group joined when a launcher started several
    ranks and none is initialised yet (else nothing happens); left again when the block
    ends normally (after an error the process exits with it, see below)."""
    dist = torch.distributed
    if launched_ranks() <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(rank_device(device)))
    seconds = collective_timeout()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=seconds))
    try:
        yield
        # Left only on success: after an error the other ranks may be waiting in a
        # collective, and tearing the group down under them can abort this process before
        # its error is printed; torchrun stops the job and the process's exit frees the
        # group. The barrier first: the ranks leave together (rank 0 writes the run while
        # the others wait), and while this thread waits without the GIL, gloo's worker
        # threads release the tensors of the last collectives (see :func:`leave`).
        dist.barrier()
    except RuntimeError as e:
        if "timed out" not in str(e).lower():
            raise
        raise RunError(_timed_out(seconds)) from e
    dist.destroy_process_group()


def _timed_out(seconds: float) -> str:
    """The one line of a rank whose collective waited ``seconds`` in vain."""
    rank, ranks = torch.distributed.get_rank(), torch.distributed.get_world_size()
    others = [r for r in range(ranks) if r != rank]
    peer = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"
    return (
        f"rank {rank}: {peer} did not join a collective within the {seconds:g} s timeout "
        f"({TIMEOUT_VARIABLE}); it is stopped, hung or far slower than this rank: look at it "
        f"(or raise {TIMEOUT_VARIABLE} if it is only slow), then run the job again (with "
        "--resume if it saved a checkpoint)"
    )


def leave(code: int) -> None:
    """End a process that torchrun launched as one rank of several, with exit status
    ``code``, without Python's interpreter finalization.

    Gloo's process group outlives ``destroy_process_group`` (its C++ objects hold it), and
    its worker threads release each collective's tensors after the caller has moved on;
    releasing a tensor that Python created takes the GIL. A worker that asks for the GIL
    while the interpreter is finalizing is ended by CPython from inside C++, which aborts
    the process ("terminate called without an active exception", SIGABRT), after all of
    its work is done and saved: about one run in twenty on two busy cores, seen in a core
    dump with the main thread in ``Py_FinalizeEx`` and a gloo worker in
    ``~AsyncAllgatherWork``. Every file of a run is written and closed by then; the
    standard streams are flushed here, and ``os._exit`` skips the finalization."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = [
    "COLLECTIVE_TIMEOUT",
    "collective_timeout",
    "launched_ranks",
    "leave",
    "process_group",
    "rank_device",
]
