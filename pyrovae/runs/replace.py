"""Which directories ``pyrovae train --overwrite`` may replace: only a run pyrovae wrote.

A run directory holds the files of :func:`~pyrovae.runs.record.run_files` (a recipe's own
among them), its lock file, temporary files of interrupted writes, and ``figures/`` with PNG
files; ``config.json``, where there is one, reads as a pyrovae configuration. Anything else
(an application's ``config.json``, a ``figures/fig1.pdf``, a symbolic link, a file of the
user's) means pyrovae did not write the directory, or not all of it: it is refused in one
line, before any training, and nothing in it is touched.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

from .record import CONFIG, FIGURES, RunError, read_json, run_files


def check_replaceable(out: Path, extra: Iterable[str] = ()) -> None:
    """Raise :class:`RunError` unless ``out`` holds nothing but a pyrovae run (``extra``: the
    recipes' own file names), naming the first thing that is not."""
    reason = _foreign(out, extra)
    if reason:
        raise RunError(
            f"--overwrite: {out} is not a run pyrovae wrote ({reason}); pyrovae replaces only "
            "its own runs: choose another --out, or move the directory away yourself"
        )


def _foreign(out: Path, extra: Iterable[str]) -> str | None:
    """Why ``out`` is not (only) a pyrovae run, or None."""
    if out.is_symlink():  # replacing it would replace the link, not the run it points to
        return f"it is a symbolic link: pass --out {out.resolve()}"
    ours = {p.name for p in run_files(out, extra)} | {".lock"}
    for path in sorted(out.iterdir()):
        name = path.name
        kind = path.lstat().st_mode
        if stat.S_ISLNK(kind):
            return f"{name} is a symbolic link"
        if _temporary(name):
            continue
        if name not in ours:
            return f"it holds {name}"
        if name == FIGURES:
            if not stat.S_ISDIR(kind):
                return f"{name} is not a directory"
            for figure in sorted(path.iterdir()):
                if figure.is_symlink():
                    return f"{name}/{figure.name} is a symbolic link"
                if _temporary(figure.name):
                    continue
                if figure.suffix != ".png" or not figure.is_file():
                    return f"it holds {name}/{figure.name}"
        elif not stat.S_ISREG(kind):
            return f"{name} is not a regular file"
    if (out / CONFIG).exists():
        from .registry import read_config

        try:
            read_config(read_json(out / CONFIG))
        except Exception as e:  # whatever fails to read as one is not ours
            return f"its {CONFIG} is not a pyrovae configuration: {str(e).splitlines()[0]}"
    return None


def _temporary(name: str) -> bool:
    """A file an interrupted pyrovae write leaves (:mod:`pyrovae.atomic`, a staged file)."""
    return name.startswith(".") and name.endswith((".tmp", ".staged"))
