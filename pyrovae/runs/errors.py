"""Which errors the CLI shows as one line (a user can fix them) and which keep their
traceback (a bug, in pyrovae or in a user's program).

One line, ``pyrovae: error: <message>``: the error types of :data:`USER_ERRORS`, a
``ValueError`` that pyrovae raised on purpose, by a ``raise`` statement in its own code (bad
settings, data outside a likelihood's support, a program outside the contract: messages that
name the problem and the fix), and two conditions of the machine rather than of the code: a
full disk (``OSError`` ENOSPC, wherever it is written: a checkpoint, a figure, a sample grid)
and memory that runs out (``MemoryError``, PyTorch's allocator error). Any other exception, a
``ValueError`` from PyTorch, Pyro or the user's model included, shows its traceback: it may be
a bug, and the traceback is how to find it. ``pyrovae --debug`` or ``PYROVAE_DEBUG=1`` (the
older ``PYROVAE_TRACEBACK=1`` too) shows the traceback of every error.
"""

from __future__ import annotations

import errno
import linecache
import os
import traceback

from ..data import DataError
from ..errors import TrainingDiverged
from .factory_import import ModelSpecError
from .record import CheckpointError, RunError

#: Errors a user can cause and fix, whatever raised them.
USER_ERRORS = (DataError, ModelSpecError, CheckpointError, RunError, TrainingDiverged)
#: Environment variables that ask for every error's traceback.
DEBUG_VARIABLES = ("PYROVAE_DEBUG", "PYROVAE_TRACEBACK")
#: What PyTorch's CPU and CUDA allocators say when an allocation fails.
_ALLOCATOR_FAILURES = ("can't allocate memory", "CUDA out of memory", "out of memory")


def debugging() -> bool:
    """Whether ``PYROVAE_DEBUG`` (or ``PYROVAE_TRACEBACK``) asks for every traceback."""
    return any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_VARIABLES)


def is_user_error(error: BaseException) -> bool:
    """Whether the CLI shows ``error`` as one line; see the module docstring."""
    return one_line(error) is not None


def one_line(error: BaseException) -> str | None:
    """The line the CLI prints for ``error``, or None when its traceback is shown (a bug, or
    :func:`debugging`)."""
    if debugging():
        return None
    if isinstance(error, USER_ERRORS) or _raised_by_pyrovae(error):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the device{where}; free some space and run the command again"
    if isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and any(s in str(error) for s in _ALLOCATOR_FAILURES)
    ):
        return (
            "out of memory: the model, batch or data do not fit this machine's memory; use "
            "smaller sizes (--batch-size, --latent-dim, --hidden, --particles, --components, "
            "--num-samples) or a machine with more memory"
        )
    return None


def _raised_by_pyrovae(error: BaseException) -> bool:
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    frame, line = list(traceback.walk_tb(error.__traceback__))[-1]
    module = frame.f_globals.get("__name__", "")
    source = linecache.getline(frame.f_code.co_filename, line).strip()
    return module.split(".")[0] == "pyrovae" and source.startswith("raise")
