"""The package's import graph: no cycles, and the library's layering.

Every ``pyrovae/**/*.py`` is parsed with :mod:`ast` (nothing is imported) and every import
statement in it counts, at module level or inside a function, under ``if TYPE_CHECKING:``
too: a lazy import is still a dependency. Edges:

- ``import pyrovae.a.b`` and ``from pyrovae.a import b`` with ``b`` a submodule: an edge to
  ``pyrovae.a.b`` only, not to the packages above it (whose ``__init__`` Python also runs);
- ``from pyrovae.a import name`` with ``name`` not a submodule (a function, a class, ``*``):
  an edge to ``pyrovae.a``;
- relative imports (``from . import x``, ``from ..infer.em import em``) resolve the same way
  from the importing module's package.

The rules:

(a) no cycle anywhere in the package (:data:`CYCLE_SCOPE`); a cycle is reported as a chain of
    module names;
(b) a library module (:func:`is_library`) imports library modules only: never the
    application layer (``pyrovae.runs``, ``pyrovae.cli`` and the other run/CLI modules of
    :data:`APP_MODULES`), nor a new top-level module before it is listed in
    :data:`LIBRARY_TOP_LEVEL`;
(c) ``pyrovae.infer`` imports nothing from ``pyrovae.models``, and ``pyrovae.models``
    nothing from ``pyrovae.infer`` except the one edge of :data:`ALLOWED_MODELS_TO_INFER`
    (``fit_mixture`` runs the generic EM driver);
(d) a family's procedure (``pyrovae.procedures``) builds on models, guides and inference,
    and none of those imports it;
(e) ``pyrovae.infer`` knows no model family: no module of it reaches a family module
    (:data:`FAMILY_MODULES`: the models, the families' procedures, the data layer's family
    containers) through its imports, directly or through other modules (a chain is
    reported); and it defines no family's data container (a class with a ``batches``
    method, other than the :class:`~pyrovae.infer.batches.BatchSource` protocol): those live
    in the data layer, which imports the generic batching of ``pyrovae.infer.batches``.

Beside the graph: the library's strings name no command-line flag (its messages name their
keyword arguments through ``pyrovae.errors.option``).

The walker is itself tested on a small synthetic package with a known cycle, so that the
rules cannot pass because it found no edges.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pyrovae"

#: Top-level modules of the library, beside its subpackages (:data:`LIBRARY_PACKAGES`).
#: ``pyrovae`` itself (``__init__``: ``fit``, ``log_marginal``, ``models``, ``guides``) is
#: library too.
LIBRARY_TOP_LEVEL = frozenset(
    f"pyrovae.{name}"
    for name in (
        "_launch",  # the package's first import: python -m pyrovae's sys.path guard
        "atomic",
        "distributions",
        "errors",
        "kmeans",
        "likelihoods",
        "machine",
        "module",
        "nn",
        "ranks",
        "rng",
    )
)
LIBRARY_PACKAGES = (
    "pyrovae.models",
    "pyrovae.guides",
    "pyrovae.infer",
    "pyrovae.diagnostics",
    "pyrovae.procedures",
    "pyrovae.data",
)

#: The application layer: the run directory and its recipes, the CLI, and the run modules
#: that ``pyrovae.runs`` replaces. Named in (b)'s messages; the rule itself is "library
#: imports library only".
APP_MODULES = frozenset(
    f"pyrovae.{name}"
    for name in (
        "__main__",
        "builders",
        "checkpoint",
        "cli",
        "config",
        "evaluate",
        "families",
        "mixture_run",
        "run",
        "runs",
        "ssvae_run",
    )
)

#: The one import from pyrovae.models into pyrovae.infer: fit_mixture runs EM by the generic
#: driver (see pyrovae/models/mixture_em.py).
ALLOWED_MODELS_TO_INFER = frozenset({("pyrovae.models.mixture_em", "pyrovae.infer.em")})

#: The modules of a model family, which no module of ``pyrovae.infer`` may reach (rule (e)):
#: the models, the families' procedures, and the data layer's containers of one family's
#: data (partly labelled rows, padded sequences batched by length).
FAMILY_MODULES = (
    "pyrovae.models",
    "pyrovae.procedures",
    "pyrovae.data.semisupervised",
    "pyrovae.data.sequence_batches",
)

Graph = dict[str, set[str]]


def within(name: str, package: str) -> bool:
    """Whether module ``name`` is ``package`` or inside it."""
    return name == package or name.startswith(package + ".")


def is_library(name: str) -> bool:
    return (
        name == "pyrovae"
        or name in LIBRARY_TOP_LEVEL
        or any(within(name, package) for package in LIBRARY_PACKAGES)
    )


def is_app(name: str) -> bool:
    return any(within(name, app) for app in APP_MODULES)


def CYCLE_SCOPE(name: str) -> bool:  # noqa: N802 - a setting, named like one
    """The modules rule (a) checks for cycles: every module of the package."""
    return True


# ---- the walker ---------------------------------------------------------------------------


def find_modules(package_dir: Path) -> dict[str, Path]:
    """{dotted module name: file} for every ``.py`` under a package directory; a package is
    named by its ``__init__.py``."""
    modules = {}
    base = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(target: str, modules: Collection[str]) -> str | None:
    """The module an imported dotted name denotes: itself if it is a module, else its
    longest prefix that is one (``pyrovae.infer.em.em`` -> ``pyrovae.infer.em``); None
    outside the package."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` (file ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                if node.level - 1 > len(anchor):
                    raise ValueError(f"{name}: relative import beyond the top package")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = []
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in modules else base)
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                edges.add(resolved)
    return edges


def import_graph(package_dir: Path) -> Graph:
    """{module: the package modules it imports} for a package directory."""
    modules = find_modules(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: Graph, scope: Callable[[str], bool] = lambda name: True) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module among the modules
    in ``scope`` (Tarjan's algorithm), each as a chain ``[a, b, ..., a]``."""
    nodes = sorted(n for n in graph if scope(n))
    inside = set(nodes)
    succ = {n: sorted(m for m in graph[n] if m in inside) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(root: str) -> None:  # iterative, so deep graphs cannot overflow
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(succ[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for node in nodes:
        if node not in index:
            strongconnect(node)
    return [_chain(component, succ) for component in components if len(component) > 1]


def _chain(component: list[str], succ: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module, by breadth-first search."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in succ[node]:
                if child not in members:
                    continue
                if child == start:  # node's path back to start, reversed, closes the cycle
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(previous[chain[-1]])
                    return [*reversed(chain), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in the component {component}")


def layering_violations(graph: Graph) -> list[str]:
    """Rules (b) and (c), as ``importer -> imported: why`` lines."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            edge = f"{module} -> {target}"
            if is_library(module) and not is_library(target):
                kind = "the application layer" if is_app(target) else "a module outside it"
                found.append(
                    f"{edge}: the library imports {kind} (if {target} is library code, "
                    "list it in LIBRARY_TOP_LEVEL)"
                )
            if within(module, "pyrovae.infer") and within(target, "pyrovae.models"):
                found.append(f"{edge}: pyrovae.infer must not import pyrovae.models")
            if within(target, "pyrovae.procedures") and any(
                within(module, package)
                for package in ("pyrovae.infer", "pyrovae.models", "pyrovae.guides")
            ):
                found.append(
                    f"{edge}: a family's procedure builds on models, guides and inference, "
                    "which never import it"
                )
            if (
                within(module, "pyrovae.models")
                and within(target, "pyrovae.infer")
                and (module, target) not in ALLOWED_MODELS_TO_INFER
            ):
                found.append(
                    f"{edge}: pyrovae.models imports pyrovae.infer only as "
                    f"{sorted(ALLOWED_MODELS_TO_INFER)}"
                )
    return found


def family_reach(graph: Graph) -> list[str]:
    """Rule (e) on the graph: for every module of ``pyrovae.infer`` that reaches a module of
    :data:`FAMILY_MODULES` through its imports, a shortest chain ``a -> ... -> family``
    (breadth-first), with why."""
    found = []
    for start in sorted(m for m in graph if within(m, "pyrovae.infer")):
        previous: dict[str, str] = {start: start}
        frontier = [start]
        reached = None
        while frontier and reached is None:
            following = []
            for node in frontier:
                for child in sorted(graph.get(node, ())):
                    if child in previous:
                        continue
                    previous[child] = node
                    if any(within(child, family) for family in FAMILY_MODULES):
                        reached = child
                        break
                    following.append(child)
                if reached is not None:
                    break
            frontier = following
        if reached is not None:
            chain = [reached]
            while chain[-1] != start:
                chain.append(previous[chain[-1]])
            found.append(
                f"{' -> '.join(reversed(chain))}: pyrovae.infer knows no model family (its "
                "data containers live in pyrovae.data, its procedures beside its model)"
            )
    return found


def data_containers(source: str) -> list[str]:
    """The classes of ``source`` that cut data into batches (a ``batches`` method), other
    than a ``Protocol`` declaring one, as ``line: name``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
        methods = {
            item.name
            for item in node.body
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if "batches" in methods and "Protocol" not in bases:
            found.append(f"{node.lineno}: {node.name}")
    return found


# ---- the walker, on a package whose graph is known ----------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


SYNTHETIC = {
    "pkg/__init__.py": "from .a import A\n",
    "pkg/a.py": "from . import b\n\nA = 1\n",
    # A function-level import closes the cycle a -> b -> c -> a.
    "pkg/b.py": "def f():\n    from .c import C\n    return C\n",
    "pkg/c.py": "import pkg.a\n\nC = 2\n",
    "pkg/sub/__init__.py": "from .leaf import LEAF\n",
    "pkg/sub/leaf.py": "import os\n\nLEAF = 3\n",
    # from pkg.sub import <not a submodule>: an edge to pkg.sub; import pkg.sub.leaf: to leaf
    # only; from .. import <submodule> two levels up; TYPE_CHECKING imports count.
    "pkg/sub/user.py": (
        "from typing import TYPE_CHECKING\n\n"
        "import pkg.sub.leaf\n"
        "from pkg.sub import LEAF\n"
        "from .. import c\n"
        "from ..a import A\n\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub.leaf import LEAF as L\n"
    ),
}


def test_the_walker_resolves_every_form_of_import(tmp_path):
    graph = import_graph(write_package(tmp_path, SYNTHETIC))
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c"},
        "pkg.c": {"pkg.a"},
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": set(),
        "pkg.sub.user": {"pkg.sub.leaf", "pkg.sub", "pkg.c", "pkg.a"},
    }


def test_the_walker_finds_a_known_cycle_as_a_chain(tmp_path):
    graph = import_graph(write_package(tmp_path, SYNTHETIC))
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    # Outside the scope, or with the function-level import gone, there is none.
    assert find_cycles(graph, scope=lambda name: name != "pkg.b") == []
    acyclic = dict(SYNTHETIC, **{"pkg/b.py": "def f():\n    return 0\n"})
    assert find_cycles(import_graph(write_package(tmp_path / "acyclic", acyclic))) == []


def test_find_cycles_reports_every_component_and_a_self_contained_chain():
    graph = {
        "x": {"y"},
        "y": {"x", "z"},
        "z": {"w"},
        "w": {"z", "v"},
        "v": set(),
    }
    assert sorted(find_cycles(graph)) == [["w", "z", "w"], ["x", "y", "x"]]


def test_the_layering_rules_catch_each_forbidden_edge():
    graph = {
        "pyrovae.infer.fit": {"pyrovae.models.vae", "pyrovae.rng"},
        "pyrovae.models.mixture": {"pyrovae.infer.discrete"},
        "pyrovae.models.mixture_em": {"pyrovae.infer.em", "pyrovae.models.mixture"},
        "pyrovae.diagnostics.views": {"pyrovae.runs.recipe", "pyrovae.infer.importance"},
        "pyrovae.data": {"pyrovae.cli"},
        "pyrovae.runs.recipe": {"pyrovae.models.vae", "pyrovae.infer.fit"},
        "pyrovae.infer.captured": {"pyrovae.procedures.semisupervised"},
        "pyrovae.procedures.semisupervised": {"pyrovae.infer.fit", "pyrovae.models.ssvae"},
    }
    found = layering_violations(graph)
    assert [line.split(":")[0] for line in found] == [
        "pyrovae.data -> pyrovae.cli",
        "pyrovae.diagnostics.views -> pyrovae.runs.recipe",
        "pyrovae.infer.captured -> pyrovae.procedures.semisupervised",
        "pyrovae.infer.fit -> pyrovae.models.vae",
        "pyrovae.models.mixture -> pyrovae.infer.discrete",
    ]


def test_rule_e_finds_a_family_module_reached_directly_or_through_another_module():
    graph = {
        "pyrovae.infer.fit": {"pyrovae.infer.batches", "pyrovae.rng"},
        "pyrovae.infer.batches": {"pyrovae.data"},  # the package re-exports the containers
        "pyrovae.infer.em": {"pyrovae.data.splits"},  # a generic data module: allowed
        "pyrovae.infer.captured": {"pyrovae.procedures.semisupervised"},
        "pyrovae.infer.terms": {"pyrovae.diagnostics.views"},
        "pyrovae.diagnostics.views": {"pyrovae.models.vae"},
        "pyrovae.data": {"pyrovae.data.splits", "pyrovae.data.sequence_batches"},
        "pyrovae.data.splits": set(),
        "pyrovae.data.sequence_batches": {"pyrovae.infer.batches"},
        "pyrovae.rng": set(),
    }
    found = family_reach(graph)
    assert [line.split(":")[0] for line in found] == [
        "pyrovae.infer.batches -> pyrovae.data -> pyrovae.data.sequence_batches",
        "pyrovae.infer.captured -> pyrovae.procedures.semisupervised",
        "pyrovae.infer.fit -> pyrovae.infer.batches -> pyrovae.data -> "
        "pyrovae.data.sequence_batches",
        "pyrovae.infer.terms -> pyrovae.diagnostics.views -> pyrovae.models.vae",
    ]


def test_the_container_finder_sees_a_batches_method_and_not_the_protocol():
    source = (
        "from typing import Protocol\n\n"
        "class BatchSource(Protocol):\n    def batches(self): ...\n\n"
        "@dataclass\nclass SequenceData:\n    x: int\n\n    def batches(self):\n"
        "        return []\n\n"
        "class TensorBatches:\n    def __iter__(self):\n        yield from ()\n"
    )
    assert data_containers(source) == ["7: SequenceData"]


# ---- the package itself --------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT)


def test_the_graph_is_the_packages(graph):
    """Not vacuous: the walker sees the package's modules and the edges known to exist."""
    assert {"pyrovae", "pyrovae.infer.trainer", "pyrovae.models.mixture", "pyrovae.rng"} <= set(
        graph
    )
    assert "pyrovae.infer.em" in graph["pyrovae.models.mixture_em"]
    assert "pyrovae.kmeans" in graph["pyrovae.models.mixture"]
    assert "pyrovae.errors" in graph["pyrovae.infer.trainer"]
    assert sum(map(len, graph.values())) > 50


def test_no_import_cycle(graph):
    cycles = find_cycles(graph, CYCLE_SCOPE)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_the_application_layer_and_models_and_infer_stay_apart(
    graph,
):
    found = layering_violations(graph)
    assert not found, "layering violations:\n" + "\n".join(found)


def test_infer_reaches_no_family_module(graph):
    found = family_reach(graph)
    assert not found, "pyrovae.infer imports a family:\n" + "\n".join(found)


def test_infer_defines_no_data_container():
    """A family's data container (partly labelled rows, padded sequences) is a BatchSource of
    the data layer; infer declares the protocol and batches tensors, nothing of a family."""
    found = {}
    for name, path in find_modules(ROOT).items():
        containers = data_containers(path.read_text())
        if containers:
            found[name] = containers
    inside = {name: where for name, where in found.items() if within(name, "pyrovae.infer")}
    assert not inside, f"data containers in pyrovae.infer: {inside}; move them to pyrovae.data"
    # Not vacuous: the finder sees the containers where they live.
    assert {"pyrovae.data.semisupervised", "pyrovae.data.sequence_batches"} <= set(found)


def flag_literals(source: str) -> list[str]:
    """String constants of ``source`` (docstrings left out) that name a command-line flag."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", node.value):
                found.append(f"{node.lineno}: {flag}")
    return found


def test_the_flag_finder_sees_flags_in_messages_and_not_in_docstrings():
    source = '"""Run with --epochs 3."""\nraise ValueError(f"pass --num-labels {n} or x--y")\n'
    assert flag_literals(source) == ["2: --num-labels"]


def test_the_library_never_names_a_command_line_flag():
    """A library message names its keyword argument through pyrovae.errors.option, which the
    command line turns into the option; the library itself names no flag."""
    found = {}
    for name, path in find_modules(ROOT).items():
        if not is_library(name):
            continue
        flags = flag_literals(path.read_text())
        if flags:
            found[name] = flags
    assert not found, f"library modules naming command-line flags: {found}; use errors.option"
