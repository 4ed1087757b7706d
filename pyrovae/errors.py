"""Errors of the library that both layers raise and catch.

The library (:mod:`pyrovae.infer`, :mod:`pyrovae.models`) raises them; the application layer
catches them to report a fix to the user. This module imports nothing from pyrovae, so
anything may import it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)
#: Frames that decorators add between a user's call and the function (``torch.no_grad``).
_DECORATOR_FILES = (str(Path("torch", "utils", "_contextlib.py")),)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters are left at their last finite step.

    Raised by :class:`~pyrovae.infer.Trainer` (the SVI loss) and :func:`~pyrovae.infer.em`
    (the log-likelihood of an EM iteration).
    """


def user_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn`` that names the user's line: the first frame
    above the calling function outside pyrovae and outside torch's decorators (a function
    under ``@torch.no_grad()`` is one frame further from its caller than it looks)."""
    frame = sys._getframe(1)  # the function that warns: stacklevel 1
    level = 1
    while frame.f_back is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE) or filename.endswith(_DECORATOR_FILES)


__all__ = ["TrainingDiverged", "user_stacklevel"]
