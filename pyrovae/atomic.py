"""Atomic file writes, shared by the library's figures and the run layer's records.

A file is written to a temporary name in the same directory and renamed over the target
(``os.replace`` is atomic on POSIX and Windows), so an interrupt never leaves a half-written
file behind. A temporary file that a killed writer left (untouched for :data:`STALE_SECONDS`)
is removed by the next write of the same file. The file gets the permissions the umask gives
a new file (``tempfile`` alone would leave it readable by its owner only).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: A temporary file untouched this long (seconds) belongs to a writer that died.
STALE_SECONDS = 300.0


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; no partial file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def temporaries(path: Path) -> list[Path]:
    """The temporary files :func:`atomic_write` makes (or left) for ``path``."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temporaries(path: Path, older_than: float = STALE_SECONDS) -> None:
    """Delete the temporary files of ``path`` that no writer has touched for ``older_than``
    seconds (a write in progress keeps touching its own)."""
    now = time.time()
    for stale in temporaries(path):
        try:
            if now - stale.stat().st_mtime > older_than:
                stale.unlink()
        except OSError:  # another process removed or renamed it meanwhile
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
