"""The examples in the library's docstrings run and print what they say (doctest), so the
API reference (docs/) cannot show an example that has rotted."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import pyrovae

#: The layer that runs commands is not part of the library's reference.
SKIPPED = ("pyrovae.runs", "pyrovae.cli", "pyrovae.__main__")


def library_modules() -> list[str]:
    names = ["pyrovae"]
    for info in pkgutil.walk_packages(pyrovae.__path__, "pyrovae."):
        if not info.name.startswith(SKIPPED):
            names.append(info.name)
    return sorted(names)


def examples(name: str) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return [t for t in tests if t.examples]


WITH_EXAMPLES = [name for name in library_modules() if examples(name)]


def test_the_reference_has_examples_for_the_first_calls():
    """The calls of a first session carry examples (a guard: the test below passes vacuously
    if the examples are removed)."""
    names = {t.name for name in WITH_EXAMPLES for t in examples(name)}
    assert {
        "pyrovae.infer.fit.fit",
        "pyrovae.infer.importance.log_marginal",
        "pyrovae.data.datasets.load_dataset",
        "pyrovae.data.semisupervised.split_labeled",
    } <= names


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in examples(name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {name}"
