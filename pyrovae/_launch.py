"""``python -m pyrovae`` puts the working directory first on ``sys.path``: run from inside a
directory someone sent (``cd RUN && python -m pyrovae evaluate .``), a ``torch.py`` or
``sklearn.py`` planted there would be imported in place of the real one. :func:`guard` takes
that entry off before pyrovae imports anything, in that case only: the installed ``pyrovae``
command never adds it, and ``pyrovae train mypkg.mod:factory`` still finds a factory in the
working directory, which it searches explicitly (:mod:`pyrovae.runs.recipes.factory`).
"""

from __future__ import annotations

import os
import sys


def run_as_module() -> bool:
    """Whether this process is ``python [options] -m pyrovae[.module] ...`` with the package
    being located now (``sys.argv[0]`` is ``"-m"`` until it is found)."""
    if sys.argv[:1] != ["-m"]:
        return False
    argv = list(getattr(sys, "orig_argv", []))
    for i, token in enumerate(argv[1:], start=1):
        if token == "-m":
            target = argv[i + 1] if i + 1 < len(argv) else ""
        elif token.startswith("-m"):
            target = token[2:]
        else:
            continue
        return target.split(".")[0] == "pyrovae"
    return False


def guard() -> None:
    """Remove the working directory that ``python -m pyrovae`` put first on ``sys.path``
    (``-P`` or ``PYTHONSAFEPATH``, where set, already keep it off)."""
    if getattr(sys.flags, "safe_path", False) or not run_as_module() or not sys.path:
        return
    if sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
