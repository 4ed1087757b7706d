"""An exclusive lock on a run directory while a process trains into it.

``RUN_DIR/.lock`` is locked with the operating system's advisory file lock (``fcntl.flock``
on POSIX), which the OS releases whenever the holder exits, however it exits (a crash or
``kill -9`` included), so a lock is never left stale. The file holds the holder's PID, for the
message a second process gets. Where ``fcntl`` is missing (Windows) the lock is not taken.
"""

from __future__ import annotations

import os
from pathlib import Path

from .record import RunError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"


class RunLock:
    """``with RunLock(out):`` holds the lock on ``out`` (created if missing; :attr:`created`
    says whether it was), or raises :class:`RunError` naming the process that holds it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.created = False
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if self.directory.exists() and not self.directory.is_dir():
            raise RunError(f"--out {self.directory} is a file, not a run directory; choose another")
        self.created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"cannot create the run directory {self.directory}: {e.strerror}") from e
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunError(
                    f"{self.directory} is being trained by process {holder}; wait for it to "
                    "finish (or stop it), then --resume, or choose another --out"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
