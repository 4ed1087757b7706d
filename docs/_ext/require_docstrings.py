"""A Sphinx extension: every public name of pyrovae has a docstring of its own.

autodoc leaves out a member without a docstring and says nothing; this extension walks the
public API instead (each package of the ``require_docstrings_packages`` setting: the names
of its ``__all__``, and the public methods and properties each of its classes defines) and
warns for every name without a docstring of its own, naming it (``-W`` makes the warning an
error). An inherited docstring does not count: each public name states its own contract.
"""

from __future__ import annotations

import importlib
import inspect

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _has_docstring(obj) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def missing_docstrings(packages: list[str]) -> list[str]:
    """Dotted names of the public API without a docstring of their own."""
    missing = []
    for package in packages:
        module = importlib.import_module(package)
        if not _has_docstring(module):
            missing.append(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants are documented by the comment above them
            if not _has_docstring(obj):
                missing.append(f"{package}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                function = value.fget if isinstance(value, property) else value
                if isinstance(function, (staticmethod, classmethod)):
                    function = function.__func__
                if inspect.isfunction(function) and not _has_docstring(function):
                    missing.append(f"{package}.{name}.{attr}")
    return missing


def check(app: Sphinx) -> None:
    for name in missing_docstrings(app.config.require_docstrings_packages):
        logger.warning(f"{name} has no docstring", type="pyrovae", subtype="docstring")


def setup(app: Sphinx) -> dict:
    app.add_config_value("require_docstrings_packages", [], "env")
    app.config.autodoc_inherit_docstrings = False
    app.connect("builder-inited", check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
