"""Atomic file writes, shared by the library's figures and the run layer's records.

A file is written to a temporary name in the same directory and renamed over the target
(``os.replace`` is atomic on POSIX and Windows), so an interrupt never leaves a half-written
file behind. The writer holds an advisory lock (``fcntl.flock``) on its temporary file while it
writes, which the OS releases however the writer ends (``kill -9`` included): a temporary file
that nobody holds belongs to a dead writer and is removed by the next write of the same file
(:func:`remove_stale_temporaries`), and never one that a live writer holds. Where ``fcntl`` is
missing (Windows), a temporary file untouched for :data:`STALE_SECONDS` counts as dead. The
file gets the permissions the umask gives a new file (``tempfile`` alone would leave it
readable by its owner only).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: A temporary file untouched this long (seconds) belongs to a writer that died.
STALE_SECONDS = 300.0


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; no partial file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = _held_temporary(path)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock, after the rename: no one removes a finished file
    return path


def _held_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file for ``path``, locked by this writer: (its descriptor, its name).
    A remover may take a file between its creation and the lock; it is then made anew."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(tmp, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return fd, tmp
        os.close(fd)


def temporaries(path: Path) -> list[Path]:
    """The temporary files :func:`atomic_write` makes (or left) for ``path``."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def remove_stale_temporaries(path: Path, older_than: float = STALE_SECONDS) -> None:
    """Delete the temporary files of ``path`` whose writer is dead: no process holds its lock
    on them (without ``fcntl``: untouched for ``older_than`` seconds)."""
    for stale in temporaries(path):
        remove_if_dead(stale, older_than)


def remove_if_dead(tmp: Path, older_than: float = STALE_SECONDS) -> bool:
    """Remove the temporary file ``tmp`` of :func:`atomic_write` if its writer is dead (see
    :func:`remove_stale_temporaries`); whether it was removed. The lock is held while the file
    is unlinked, so a writer that locks it meanwhile sees it gone and makes another."""
    try:
        if fcntl is None:
            if time.time() - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                return True
            return False
        fd = os.open(tmp, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # removed or renamed meanwhile, a link, or not ours to touch
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False  # a live writer holds it
        raise
    try:
        if os.path.samestat(os.fstat(fd), os.stat(tmp, follow_symlinks=False)):
            tmp.unlink()
            return True
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
