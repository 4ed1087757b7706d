"""Errors of the library that both layers raise and catch.

The library (:mod:`pyrovae.infer`, :mod:`pyrovae.models`) raises them; the application layer
catches them to report a fix to the user. A message names a setting by :func:`option`: the
keyword argument for a Python caller, the command-line option under the ``pyrovae`` command.
This module imports nothing from pyrovae, so anything may import it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)
#: Frames that decorators add between a user's call and the function (``torch.no_grad``).
_DECORATOR_FILES = (str(Path("torch", "utils", "_contextlib.py")),)
#: Whether messages name settings as command-line options (:func:`command_line_names`).
_COMMAND_LINE = ContextVar("pyrovae_command_line_names", default=False)
_UNSET = object()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters are left at their last finite step.

    Raised by :class:`~pyrovae.infer.Trainer` (the SVI loss) and :func:`~pyrovae.infer.em`
    (the log-likelihood of an EM iteration).
    """


def option(name: str, value: object = _UNSET, *, python: str | None = None) -> str:
    """How a message of the library names its setting ``name`` (a keyword argument, e.g.
    ``num_labels``), with an optional value: ``num_labels`` / ``likelihood='gaussian'`` /
    ``download=True`` for a Python caller, and, while :func:`command_line_names` is in
    effect (the ``pyrovae`` command), the option the command line gives it:
    ``--num-labels`` / ``--likelihood gaussian`` / ``--download``.

    The library thus never names a command-line flag itself; its messages read right for
    whoever called it. ``python`` replaces the Python form where the keyword is spelled
    differently (``option("dataset", "chorales", python="load_dataset('chorales')")``).

    Example:
        >>> option("lr"), option("likelihood", "gaussian"), option("download", True)
        ('lr', "likelihood='gaussian'", 'download=True')
        >>> with command_line_names():
        ...     option("lr"), option("likelihood", "gaussian"), option("download", True)
        ('--lr', '--likelihood gaussian', '--download')
    """
    if not _COMMAND_LINE.get():
        if python is not None:
            return python
        return name if value is _UNSET else f"{name}={value!r}"
    flag = "--" + name.replace("_", "-")
    if value is _UNSET or value is True:
        return flag
    return f"{flag} {value}"


@contextmanager
def command_line_names() -> Iterator[None]:
    """While the block runs, :func:`option` names settings as command-line options."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


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


__all__ = ["TrainingDiverged", "command_line_names", "option", "user_stacklevel"]
