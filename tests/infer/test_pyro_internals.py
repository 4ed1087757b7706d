"""Pyro's private API, read in one module (pyrovae.infer.pyro_internals) and checked there.

Three kinds of check:

- no other module of the package reads a private Pyro name (the source is parsed, nothing
  imported; the parser is itself tested on a snippet with every kind of use it must see);
- each function of ``pyro_internals`` equals the Pyro function it names, on programs that
  reach each of its paths, so that a Pyro release that changes one fails here by name;
- :class:`BranchFreeDice`, the one copied method, equals Pyro's ``Dice`` in value and
  gradient on each of its paths, and Pyro's source of the copied method is the one it copies.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import ELBO, TraceEnum_ELBO, traceenum_elbo
from pyro.infer.util import Dice
from pyro.ops import packed

from pyrovae.infer import pyro_internals
from pyrovae.infer.enum_loss import common_scale, dice_elbo
from pyrovae.infer.pyro_internals import (
    BranchFreeDice,
    PyroInternalsChanged,
    compute_dice_elbo,
    compute_model_factors,
    dim_to_symbol,
    elbo_traces,
    enumerate_dim,
    guess_max_plate_nesting,
    packed_dims,
)

PACKAGE = Path(pyro_internals.__file__).resolve().parents[1]
HOME = Path(pyro_internals.__file__).resolve()

#: Private attributes of Pyro objects that the package uses (through pyro_internals).
PRIVATE_ATTRIBUTES = {name for _, name, _ in pyro_internals.REQUIRED} | {
    "_pyro_dims",
    "_pyro_backward",
    "_pyro_backward_result",
    "_dim_to_symbol",
}
#: Private keys Pyro's handlers write into a site's ``infer`` dict.
PRIVATE_SITE_KEYS = {"_dim_to_symbol", "_enumerate_dim", "_markov_scope", "_do_not_trace"}

#: sha256 of the source of Pyro 1.9.2's ``Dice.compute_expectation``, which BranchFreeDice
#: copies (dedented, trailing spaces stripped).
DICE_SOURCE_SHA256 = "724e4f3140e381b63f032382f98279bd7f5c592b3c5b6cdfc84e056eafe667e5"


def private_pyro_uses(source: str) -> list[str]:
    """Each read of a private Pyro name in ``source``, as ``line: what``.

    Seen: ``from pyro... import _name``; ``x._pyro_*`` and the private attributes of
    :data:`PRIVATE_ATTRIBUTES` on any object; ``pyro.a.b._name`` chains; and
    ``site["infer"]["_key"]`` or ``site["infer"].get("_key")`` for Pyro's private site keys.
    """
    uses = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyro":
            uses += [f"{node.lineno}: import {a.name}" for a in node.names if a.name[0] == "_"]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            chain = node.value
            while isinstance(chain, ast.Attribute):
                chain = chain.value
            from_pyro = isinstance(chain, ast.Name) and chain.id in {"pyro", "traceenum_elbo"}
            if (
                node.attr.startswith("_pyro")
                or node.attr in PRIVATE_ATTRIBUTES
                or (from_pyro and not node.attr.startswith("__"))
            ):
                uses.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in PRIVATE_SITE_KEYS:
            uses.append(f"{node.lineno}: {node.value!r}")
    return uses


def test_the_parser_sees_every_kind_of_private_use():
    snippet = textwrap.dedent(
        """
        from pyro.infer.util import Dice, _fulldot
        from pyro.infer import traceenum_elbo
        x = traceenum_elbo._compute_model_factors(a, b)
        pairs = elbo._get_traces(m, g, (), {})
        dims = term._pyro_dims
        d = site["infer"].get("_enumerate_dim")
        s = site["infer"]["_dim_to_symbol"]
        y = pyro.infer.util._fulldot(a, b)
        fine = self._private + obj.__dict__["_ours"] + sys._getframe(1)
        """
    )
    uses = private_pyro_uses(snippet)
    assert sorted(use.split(": ", 1)[1] for use in uses) == sorted(
        [
            "import _fulldot",
            "._compute_model_factors",
            "._get_traces",
            "._pyro_dims",
            "'_enumerate_dim'",
            "'_dim_to_symbol'",
            "._fulldot",
        ]
    )


def test_no_module_but_pyro_internals_reads_a_private_pyro_name():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() == HOME:
            continue
        uses = private_pyro_uses(path.read_text())
        if uses:
            found[str(path.relative_to(PACKAGE))] = uses
    assert not found, (
        f"private Pyro names read outside pyrovae/infer/pyro_internals.py: {found}; "
        "add a function there that names the Pyro object it relies on, and call it"
    )


def test_every_private_name_is_in_the_installed_pyro():
    pyro_internals._check_required()  # the import ran it too; this names a failure plainly
    for owner, name, _ in pyro_internals.REQUIRED:
        assert hasattr(owner, name), f"Pyro {pyro.__version__} has no {owner.__name__}.{name}"


def test_a_pyro_without_a_private_name_is_refused_naming_it(monkeypatch):
    monkeypatch.delattr(ELBO, "_get_traces")
    with pytest.raises(PyroInternalsChanged, match=r"ELBO\._get_traces.*pyro-ppl==1\.9\.2"):
        pyro_internals._check_required()


# Small programs: a Gaussian mixture enumerated in the model, a class enumerated in the guide.


def mixture_model(x):
    weights = pyro.param("weights", torch.tensor([0.3, 0.7]), constraint=dist.constraints.simplex)
    locs = pyro.param("locs", torch.tensor([-1.0, 2.0]))
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(locs[c], 1.0), obs=x)


def empty_guide(x):
    pass


def coin_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        c = pyro.sample("c", dist.Bernoulli(0.4))
        pyro.sample("x", dist.Normal(z + 2.0 * c, 1.0), obs=x)


def coin_guide(x, logits=None, enumerate="parallel"):
    loc = pyro.param("loc", torch.zeros(()))
    logits = pyro.param("logits", torch.zeros(2)) if logits is None else logits
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc.expand(x.shape[0]), 1.0))
        probs = logits.softmax(-1)[1].expand(x.shape[0])
        pyro.sample("c", dist.Bernoulli(probs), infer={"enumerate": enumerate})


def traces(model, guide, x, num_particles=1):
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=num_particles)
    return elbo, list(elbo_traces(elbo, model, guide, (x,)))


@pytest.fixture(autouse=True)
def fresh_params():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


X = torch.tensor([-1.2, 0.3, 2.5, 1.9, -0.4])


def test_elbo_traces_are_the_particles_pyros_own_loss_scores():
    elbo = TraceEnum_ELBO(max_plate_nesting=1, num_particles=3)
    pyro.set_rng_seed(1)
    pairs = list(elbo_traces(elbo, coin_model, coin_guide, (X,)))
    ours = sum(traceenum_elbo._compute_dice_elbo(m, g) for m, g in pairs) / 3
    pyro.set_rng_seed(1)
    assert len(pairs) == 3
    assert torch.allclose(-elbo.differentiable_loss(coin_model, coin_guide, X), ours)


def test_guess_max_plate_nesting_finds_the_programs_nesting():
    elbo = TraceEnum_ELBO()
    assert elbo.max_plate_nesting == float("inf")
    guess_max_plate_nesting(elbo, mixture_model, empty_guide, (X,))
    assert elbo.max_plate_nesting == 1


def test_packed_dims_and_the_sites_symbols_are_pyros():
    _, [(model_trace, guide_trace)] = traces(mixture_model, empty_guide, X)
    site = model_trace.nodes["x"]
    term = site["packed"]["log_prob"]
    dims = packed_dims(term)
    assert isinstance(dims, str) and len(dims) == term.dim() == 2  # the class and the plate
    repacked = packed.pack(site["log_prob"], dim_to_symbol(site))
    assert packed_dims(repacked) == dims and torch.equal(repacked, term)
    assert enumerate_dim(model_trace.nodes["c"]) == -2  # left of the one plate
    assert enumerate_dim(site) is None


def test_compute_model_factors_runs_the_check_it_is_given_and_restores_pyros():
    _, [(model_trace, guide_trace)] = traces(mixture_model, empty_guide, X)
    original = traceenum_elbo._get_common_scale
    seen = []

    def check(scales):
        seen.append(list(scales))
        return original(scales)

    ours = compute_model_factors(model_trace, guide_trace, check=check)
    assert seen, "Pyro's _compute_model_factors no longer calls _get_common_scale"
    assert traceenum_elbo._get_common_scale is original
    pyros = traceenum_elbo._compute_model_factors(model_trace, guide_trace)
    assert ours[2] == pyros[2] and ours[3] == pyros[3] and ours[4] == pyros[4]
    for t, terms in pyros[1].items():
        assert all(torch.equal(a, b) for a, b in zip(ours[1][t], terms, strict=True))


def test_compute_dice_elbo_uses_the_dice_class_it_is_given():
    _, [(model_trace, guide_trace)] = traces(coin_model, coin_guide, X)
    used = []

    class Recording(Dice):
        def compute_expectation(self, costs):
            used.append(True)
            return super().compute_expectation(costs)

    ours = compute_dice_elbo(model_trace, guide_trace, dice=Recording)
    assert used, "Pyro's _compute_dice_elbo no longer builds its Dice from the module global"
    assert traceenum_elbo.Dice is Dice
    assert torch.equal(ours, traceenum_elbo._compute_dice_elbo(model_trace, guide_trace))


def branch_free_paths():
    """(name, model, guide, particles): each path of Dice.compute_expectation."""

    def zero_probability_guide(x):  # P(c = 1) = 0: Pyro's masked_select path
        coin_guide(x, logits=torch.tensor([0.0, -float("inf")]))

    def sequential_guide(x):  # a constant (non-tensor) log-factor: the scale term
        coin_guide(x, enumerate="sequential")

    return [
        ("all-positive", coin_model, coin_guide, 1),
        ("zero-probability", coin_model, zero_probability_guide, 1),
        ("sequential", coin_model, sequential_guide, 1),
        ("model-enumerated", mixture_model, empty_guide, 1),
        ("two-particles", coin_model, coin_guide, 2),
    ]


@pytest.mark.parametrize("name, model, guide, particles", branch_free_paths())
def test_branch_free_dice_equals_pyros_dice_in_value_and_gradient(name, model, guide, particles):
    def both():
        values = []
        for dice in (Dice, BranchFreeDice):
            pyro.set_rng_seed(3)
            _, pairs = traces(model, guide, X, particles)
            total = sum(compute_dice_elbo(m, g, dice=dice) for m, g in pairs)
            params = [p.unconstrained() for p in pyro.get_param_store().values()]
            grads = torch.autograd.grad(total, params, allow_unused=True)
            values.append((total.detach(), [g for g in grads if g is not None]))
        return values

    (pyros, pyro_grads), (ours, our_grads) = both()
    assert torch.isfinite(ours), name
    torch.testing.assert_close(ours, pyros)
    assert len(our_grads) == len(pyro_grads) > 0
    for a, b in zip(our_grads, pyro_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_the_captured_particle_is_pyros_particle():
    """enum_loss.dice_elbo (BranchFreeDice, common_scale) equals Pyro's own particle."""
    _, [(model_trace, guide_trace)] = traces(coin_model, coin_guide, X)
    ours = dice_elbo(model_trace, guide_trace)
    torch.testing.assert_close(ours, traceenum_elbo._compute_dice_elbo(model_trace, guide_trace))
    assert common_scale([1.0, 1.0]) == 1.0


def test_pyros_dice_compute_expectation_is_the_one_branch_free_dice_copies():
    lines = inspect.getsource(Dice.compute_expectation).splitlines()
    source = "\n".join(line.rstrip() for line in textwrap.dedent("\n".join(lines)).splitlines())
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == DICE_SOURCE_SHA256, (
        f"Pyro {pyro.__version__} changed Dice.compute_expectation, which "
        "pyrovae.infer.pyro_internals.BranchFreeDice copies with one branch changed: diff "
        "the two, carry Pyro's change into the copy, then set DICE_SOURCE_SHA256 to "
        f"{digest}"
    )
