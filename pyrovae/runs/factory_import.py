"""Importing a user's model factory, ``package.module:function``, and nothing else: the
working directory searched first when the user trains their own code; only the installed
environment and the directories the user names when a run someone sent is reopened (a
run never imports code from where it lies); never a function of the standard library or a
builtin, whatever a config.json names."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path


class ModelSpecError(ValueError):
    """The model name or factory cannot give a (model, guide) pair."""


def load_factory(
    spec: str, known: tuple[str, ...] = (), code_path: tuple[str, ...] | None = None
) -> Callable:
    """Import ``"package.module:function"``; errors say what is wrong and what is accepted
    (``known``: the built-in model names).

    ``code_path`` None (training: the user runs their own code): the working directory is
    searched first, as ``python -m`` does. A tuple (a run reopened: its config.json names the
    factory): only the installed environment and those directories, never the working
    directory or the run directory implicitly."""
    if ":" not in spec:
        raise ModelSpecError(
            f"unknown model {spec!r}. Built-in models: {', '.join(known)}; "
            "or give your own factory as package.module:function"
        )
    module_name, _, attr = spec.partition(":")
    if is_library(module_name):
        raise ModelSpecError(
            f"{spec} is in Python's standard library, not a model factory; give your own "
            "package.module:function returning (model, guide)"
        )
    try:
        if code_path is None:
            module = _import_from_working_directory(module_name)
        else:
            module = _import_from(module_name, code_path)
    except ImportError as e:
        if code_path is not None:
            raise ModelSpecError(
                f"cannot import {module_name!r} for the model factory {spec!r} that this run "
                f"names: {e}. Reopening a run imports its factory only from the installed "
                "environment or from --factory-path DIR (the directory that holds it); pass "
                "that if you trust its code"
            ) from e
        raise ModelSpecError(
            f"cannot import {module_name!r} for the model factory {spec!r}: {e}. Run from the "
            "directory that holds it, or add that directory to PYTHONPATH"
        ) from e
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ModelSpecError(f"{module_name!r} has no callable {attr!r} (from the model {spec!r})")
    if not inspect.isfunction(factory) or is_library(factory.__module__ or ""):
        # A builtin (os.abort), a class or a function of the standard library imported into
        # the module under another name: never a factory, and never called.
        raise ModelSpecError(
            f"{spec} is not a Python function of your own ({type(factory).__name__} from "
            f"{getattr(factory, '__module__', None) or 'a built-in module'}); a model factory "
            "is a function def'd in your module, returning (model, guide)"
        )
    return factory


def is_library(module_name: str) -> bool:
    """Whether ``module_name`` is (in) a module of Python's standard library or built into
    the interpreter: code no run may name as its factory."""
    top = module_name.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def _import_from_working_directory(module_name: str):
    """Import a module, looking in the working directory first. The installed ``pyrovae``
    command, unlike ``python -m``, does not put that directory on ``sys.path``; it is put
    first there, as Flask and Uvicorn do for their ``module:attribute`` specs, and stays so
    that the module's own later imports of its neighbours work too."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)


def _import_from(module_name: str, code_path: tuple[str, ...]):
    """Import a module from the installed environment or ``code_path``, with the working
    directory (``""`` or its path, which ``python -m`` puts on ``sys.path``) left out."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    cwd = os.getcwd()
    saved = list(sys.path)
    extra = [str(Path(p).expanduser().resolve()) for p in code_path]
    kept = [p for p in saved if p not in ("", ".", cwd) or p in extra]
    sys.path[:] = [*extra, *kept]
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path[:] = saved
