"""Sphinx configuration of pyrovae's documentation (``pip install -e ".[docs]"``, then
``python -m sphinx -W --keep-going -b html docs docs/_build/html``).

Warnings are errors in CI: a cross-reference to a pyrovae name that does not exist, a public
name without a docstring (``_ext/require_docstrings.py``) or a page left out of every toctree
fails the build. References to torch, Pyro, NumPy and the standard library are not checked
(no network for their inventories here); those to ``pyrovae`` are.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "pyrovae"
author = "the pyrovae developers"
copyright = "2026, the pyrovae developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
    "require_docstrings",
    "plain_docstrings",
]

# Tutorials are the example notebooks with the outputs they were saved with (the tests
# execute them: tests/test_notebooks.py); the build does not run them again.
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = True
#: Names outside pyrovae that docstrings refer to: not resolved here (their inventories
#: would need the network), so not checked.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|pyro|numpy|np|arviz|matplotlib|sklearn|collections|typing|pathlib)(\..*)?"),
    (r"py:.*", r"(abc|dataclasses|enum|builtins|os|io)\..*"),
    (r"py:class", r"(Tensor|Path|Callable|Sequence|Iterable|Iterator|Mapping|Any|Distribution)"),
    # Names of annotations that autodoc prints unqualified (from ``__future__`` annotations).
    (r"py:class", r"(ELBO|nn\.Module|DistributedDataParallel|Figure|Axes|Callback)"),
    # Private bases (``show-inheritance``) and type variables of signatures.
    (
        r"py:class",
        r"pyrovae\..*\._\w+|pyrovae\.infer\.modes\.F|pyrovae\.models\.mixture_steps\.Mixture",
    ),
]

#: The packages whose public names must each have a docstring (``_ext/require_docstrings.py``).
require_docstrings_packages = [
    "pyrovae",
    "pyrovae.models",
    "pyrovae.guides",
    "pyrovae.infer",
    "pyrovae.diagnostics",
    "pyrovae.procedures",
    "pyrovae.data",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "pyrovae"
html_static_path: list[str] = []


# ---- the building blocks: every library module's own public names --------------------------

#: Packages whose ``__all__`` is the public API (docs/api/<name>.rst documents each).
PACKAGES = (
    "pyrovae.models",
    "pyrovae.guides",
    "pyrovae.infer",
    "pyrovae.diagnostics",
    "pyrovae.procedures",
    "pyrovae.data",
)
#: Library modules outside those packages that docstrings refer to as building blocks.
MODULES = (
    "pyrovae.module",
    "pyrovae.errors",
    "pyrovae.nn",
    "pyrovae.likelihoods",
    "pyrovae.distributions",
    "pyrovae.kmeans",
    "pyrovae.rng",
)


def _write_blocks_page() -> None:
    """docs/api/blocks.rst: each submodule of the packages (and each module of ``MODULES``)
    with the public names it defines that no package exports (those are documented on the
    package's page; documenting them twice would be two targets for one name)."""
    import importlib
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    exported = set()
    for package in PACKAGES:
        module = importlib.import_module(package)
        exported |= {id(getattr(module, name)) for name in module.__all__}
    names = list(MODULES)
    for package in PACKAGES:
        module = importlib.import_module(package)
        if hasattr(module, "__path__"):
            names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    lines = [
        "Building blocks",
        "===============",
        "",
        "The modules behind the public names: what each package is built from, importable",
        "from its module (minibatching, site scaling, importance weights, captured steps,",
        "figures, network blocks). The names the packages export are on their own pages.",
        "",
    ]
    for name in sorted(names):
        package, _, last = name.rpartition(".")
        if package in PACKAGES and last in importlib.import_module(package).__all__:
            continue  # pyrovae.infer.fit: the module is shadowed by the function it exports
        module = importlib.import_module(name)
        attr_docs = {
            key[1] for key in ModuleAnalyzer.for_module(name).find_attr_docs() if not key[0]
        }
        members = []
        public = getattr(module, "__all__", None)  # autodoc documents no other name
        for member, value in vars(module).items():
            if public is not None and member not in public:
                continue
            if member.startswith("_") or (callable(value) and id(value) in exported):
                continue
            defined_here = getattr(value, "__module__", None) == name
            if (defined_here and callable(value)) or member in attr_docs:
                members.append(member)
        lines += [f".. automodule:: {name}"]
        lines += [f"   :members: {', '.join(members)}"] if members else ["   :no-members:"]
        lines += [""]
    (Path(__file__).parent / "api" / "blocks.rst").write_text("\n".join(lines))


_write_blocks_page()
