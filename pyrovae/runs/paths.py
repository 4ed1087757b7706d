"""Where a command writes, checked before it does any work: ``--out`` at a file where a
directory is meant (or the reverse), below a file, or where nothing can be created is named
in one line (:class:`~pyrovae.runs.record.RunError`) instead of failing, with a traceback,
after the training, drawing or plotting is done. Nothing is created by the checks."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .record import RunError


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """Raise RunError unless ``path`` is a directory that can be written into, or one that
    can be created (its nearest existing ancestor is a directory that can be written into)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"{flag} {path} is a file, not a directory; choose another")
    _check_writable(path, flag)


def check_out_file(path: str | Path, flag: str = "--out") -> None:
    """Raise RunError unless a file can be written at ``path`` (its directory made if need be):
    not a directory, not a FIFO, device or socket (which the written file would replace),
    not below a file, in a place that can be written into."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{flag} {path} is a directory, not a file; name a file in it")
    if path.exists() and not path.is_file():
        raise RunError(
            f"{flag} {path} is not a regular file (a FIFO, device or socket); name a file"
        )
    _check_writable(path.parent, flag, target=path)


def _check_writable(directory: Path, flag: str, target: Path | None = None) -> None:
    target = target or directory
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(f"{flag} {target}: {existing} is a file, not a directory; choose another")
    try:  # an anonymous temporary file (where the OS offers them): nothing is left behind
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise RunError(f"{flag} {target}: cannot write into {existing} ({reason})") from None
