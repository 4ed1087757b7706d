"""Which errors the CLI shows as one line (a user can fix them) and which keep their
traceback (a bug, in pyrovae or in a user's program).

One line, ``pyrovae: error: <message>``: the error types of :data:`USER_ERRORS`, and a
``ValueError`` that pyrovae raised on purpose, by a ``raise`` statement in its own code (bad
settings, data outside a likelihood's support, a program outside the contract: messages that
name the problem and the fix). Any other exception, a ``ValueError`` from PyTorch, Pyro or the
user's model included, shows its traceback: it may be a bug, and the traceback is how to find
it. ``PYROVAE_TRACEBACK=1`` shows the traceback of every error.
"""

from __future__ import annotations

import linecache
import os
import traceback

from ..data import DataError
from ..errors import TrainingDiverged
from .recipes.factory import ModelSpecError
from .record import CheckpointError, RunError

#: Errors a user can cause and fix, whatever raised them.
USER_ERRORS = (DataError, ModelSpecError, CheckpointError, RunError, TrainingDiverged)


def is_user_error(error: BaseException) -> bool:
    """Whether the CLI shows ``error`` as one line; see the module docstring."""
    if os.environ.get("PYROVAE_TRACEBACK"):
        return False
    if isinstance(error, USER_ERRORS):
        return True
    if not isinstance(error, ValueError) or error.__traceback__ is None:
        return False
    frame, line = list(traceback.walk_tb(error.__traceback__))[-1]
    module = frame.f_globals.get("__name__", "")
    source = linecache.getline(frame.f_code.co_filename, line).strip()
    return module.split(".")[0] == "pyrovae" and source.startswith("raise")
