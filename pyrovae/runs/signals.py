"""SIGTERM while training: raised as :class:`Terminated`, so that ``kill``, a batch system's
stop or torchrun's teardown unwinds a run as Ctrl-C does (a run without a first checkpoint
leaves nothing behind, one with a checkpoint says how to continue it)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(SystemExit):
    """SIGTERM received while training (from ``kill``, a batch system, or torchrun stopping
    the job after a rank died): unwinds as an interrupt does, so that a run without a first
    checkpoint leaves nothing behind; the process exits with 128 + 15."""


@contextmanager
def terminated_as_exit() -> Iterator[None]:
    """Inside: SIGTERM raises :class:`Terminated` (where Python may set a handler, and none
    but the default is set)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (AttributeError, ValueError):  # pragma: no cover - no SIGTERM here
        previous = None
    if previous is not signal.SIG_DFL or threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
