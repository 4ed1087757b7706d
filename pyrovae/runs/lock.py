"""An exclusive lock on a run directory while a process trains into it.

The run directory itself is locked with the operating system's advisory lock
(``fcntl.flock`` on a descriptor of the directory, POSIX), which the OS releases whenever the
holder exits, however it exits (a crash or ``kill -9`` included), so a lock is never left
stale; and since it is the directory that is locked, removing or replacing a file in it
(``rm RUN/.lock``) does not unlock it. After taking the lock, the holder checks that the path
still names the directory it locked (a run replaced by ``--overwrite`` meanwhile is locked
anew). ``RUN_DIR/.lock`` holds the holder's PID, for the message a second process gets; it is
opened only when it is a regular file of its own (never through a symbolic or hard link,
:func:`_open_lock`). On a file system that cannot lock a directory (NFS) the lock file is
locked instead, as before; where ``fcntl`` is missing (Windows) no lock is taken.

:meth:`RunLock.stage` and :meth:`RunLock.swap` replace a run (``--overwrite``) as a whole:
the new run is written into a locked staging directory beside the old one and exchanged with
it in one rename (:func:`exchange`); the old one is removed only then.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import tempfile
from pathlib import Path

from ..atomic import remove_if_dead
from .record import NotRegularFile, RunError, open_unlinked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"
#: Suffixes of the staging directory of a run being replaced and of the run it replaces,
#: beside it (``.NAME.new-XXXX``, ``.NAME.old-XXXX``).
NEW, OLD = ".new-", ".old-"


def _open_lock(path: Path) -> int:
    """The lock file, opened for writing only when it is pyrovae's own: a regular file with
    one name. A symbolic link, a hard link to a file elsewhere, a FIFO or a device put in its
    place (a run someone sent) is refused, never truncated or written through
    (:func:`~pyrovae.runs.record.open_unlinked`)."""
    fix = f"remove it (rm {path}) if no pyrovae process is training into the run, and retry"
    try:
        fd, info = open_unlinked(path, os.O_RDWR | os.O_CREAT)
    except NotRegularFile as e:
        if e.what == "a symbolic link":
            raise RunError(f"{path} is a symbolic link, not pyrovae's lock file; {fix}") from None
        raise RunError(f"{path} is not a file, not pyrovae's lock file; {fix}") from None
    except OSError as e:
        raise RunError(f"cannot create the lock file {path}: {e.strerror or e}") from e
    if info.st_nlink != 1:
        os.close(fd)
        raise RunError(f"{path} is a hard link to another file, not pyrovae's lock file; {fix}")
    return fd


def _holder(directory: Path) -> str:
    """The PID the lock file of ``directory`` names, if it can be read safely."""
    try:
        fd, _ = open_unlinked(directory / LOCK, os.O_RDONLY)
    except OSError:
        return ""
    try:
        return os.read(fd, 32).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _held(directory: Path) -> RunError:
    holder = _holder(directory)
    who = f"process {holder}" if holder else "another process"
    return RunError(
        f"{directory} is being trained by {who}; wait for it to finish (or stop it), then "
        "--resume, or choose another --out"
    )


def _busy(error: OSError) -> bool:
    """Whether a failed non-blocking flock means that another process holds the lock."""
    return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)


def _lock_directory(directory: Path) -> int | None:
    """A descriptor of ``directory`` holding its exclusive lock, or RunError naming the
    process that holds it; None without ``fcntl``, or on a file system that cannot lock a
    directory (NFS, whose emulated flock needs a file opened for writing): the lock file is
    locked instead (:meth:`RunLock._hold`)."""
    if fcntl is None:
        return None
    for _ in range(10):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if _busy(e):
                raise _held(directory) from None
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(directory))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # replaced or removed since it was opened: lock the one there now
        directory.mkdir(parents=True, exist_ok=True)
    raise RunError(f"{directory} keeps being replaced by another process; retry later")


def exchange(a: Path, b: Path) -> None:
    """Swap the directories ``a`` and ``b`` (same parent): in one atomic step where the system
    offers it (Linux's ``renameat2(RENAME_EXCHANGE)``), else by two renames, ``b`` aside to a
    ``.old-`` name and ``a`` to ``b``, leaving what was ``b`` at ``a``."""
    libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(b))
    aside = a.with_name(a.name.replace(NEW, OLD, 1))
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except BaseException:
        os.rename(aside, b)  # the old run back in its place
        raise
    os.rename(aside, a)


class RunLock:
    """``with RunLock(out):`` holds the lock on ``out`` (created if missing; :attr:`created`
    says whether it was), or raises :class:`RunError` naming the process that holds it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.created = False
        self._fds: tuple[int | None, int] | None = None
        self._staging: tuple[Path, tuple[int | None, int]] | None = None

    def __enter__(self) -> RunLock:
        if self.directory.exists() and not self.directory.is_dir():
            raise RunError(f"--out {self.directory} is a file, not a run directory; choose another")
        self.created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create the run directory {self.directory}: {e.strerror}") from e
        self._fds = self._hold(self.directory)
        if not self.created:
            self._remove_dead_leftovers()
        return self

    def _hold(self, directory: Path) -> tuple[int | None, int]:
        """The lock of ``directory`` and its lock file, holding this process's PID."""
        dir_fd = _lock_directory(directory)
        try:
            fd = _open_lock(directory / LOCK)
        except BaseException:
            if dir_fd is not None:
                os.close(dir_fd)
            raise
        if dir_fd is None and fcntl is not None:  # the directory cannot be locked here
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if _busy(e):
                    raise _held(directory) from None
                raise RunError(f"cannot lock {directory / LOCK}: {e.strerror or e}") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return dir_fd, fd

    def _remove_dead_leftovers(self) -> None:
        """What a killed writer left: temporary files no live writer holds, in the run and
        its figures, files staged by a trainer (none lives: this one holds the lock) and
        staging directories of a replacement that nobody holds."""
        for folder in (self.directory, self.directory / "figures"):
            if folder.is_dir() and not folder.is_symlink():
                for tmp in folder.glob(".*.tmp"):
                    remove_if_dead(tmp)
        for staged in self.directory.glob(".*.staged"):
            if staged.is_file() and not staged.is_symlink():
                staged.unlink(missing_ok=True)
        if fcntl is None:
            return
        pattern = glob.escape(f".{self.directory.name}")
        for suffix in (NEW, OLD):
            for left in self.directory.parent.glob(f"{pattern}{suffix}*"):
                if left.is_symlink() or not left.is_dir():
                    continue
                try:
                    fd = _lock_directory(left)
                except (RunError, OSError):
                    continue  # a live replacement, or gone
                if fd is None:
                    continue  # no directory locks here: whether it lives is unknown
                try:
                    shutil.rmtree(left, ignore_errors=True)
                finally:
                    os.close(fd)

    def stage(self) -> Path:
        """A new, locked, empty directory beside the run, to write its replacement into."""
        parent, name = self.directory.parent, self.directory.name
        staging = Path(tempfile.mkdtemp(prefix=f".{name}{NEW}", dir=parent))
        try:
            self._staging = (staging, self._hold(staging))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def swap(self) -> None:
        """Put the staged run in the run's place (:func:`exchange`), then remove the old run;
        the lock now held is the new directory's."""
        assert self._staging is not None and self._fds is not None
        staging, fds = self._staging
        exchange(staging, self.directory)
        old, self._fds, self._staging = self._fds, fds, None
        shutil.rmtree(staging, ignore_errors=True)  # the old run, now at the staging name
        _close(old)

    def discard(self) -> None:
        """Remove the staging directory of a replacement that did not complete."""
        if self._staging is not None:
            staging, fds = self._staging
            self._staging = None
            shutil.rmtree(staging, ignore_errors=True)
            _close(fds)

    def __exit__(self, *exc: object) -> None:
        self.discard()
        if self._fds is not None:
            _close(self._fds)
            self._fds = None


def _close(fds: tuple[int | None, int]) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its flock
