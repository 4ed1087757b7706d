"""Every use of Pyro's private API in pyrovae, in one module.

pyrovae reads Pyro's semantics from Pyro instead of re-deriving them, and some of what it
reads is not public: the factors ``TraceEnum_ELBO`` sums, the particles an ELBO draws, the
names Pyro gives a packed tensor's dims. Each such use is one function (or class) here,
whose docstring names the Pyro object it relies on; the rest of the package calls these
and never reads a private Pyro name itself (``tests/infer/test_pyro_internals.py`` checks
that by parsing every module, and checks each function here against the Pyro function it
wraps, so that a Pyro release that changes one fails there with the name of what changed).

Written against Pyro 1.9.2 (``pyproject.toml`` pins ``pyro-ppl>=1.9,<2``). At import, the
private names are looked up once: a Pyro without one of them stops the import with a message
naming it and the Pyro that has it, instead of an ``AttributeError`` deep inside a step.

The one copy: :class:`BranchFreeDice` repeats ``pyro.infer.util.Dice.compute_expectation``
with one branch changed (why, and why it cannot be a smaller override, in its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyro
import torch
from opt_einsum import shared_intermediates
from pyro.infer import ELBO, traceenum_elbo
from pyro.infer import util as infer_util
from pyro.infer.util import Dice
from pyro.ops import packed
from pyro.ops.einsum.adjoint import require_backward
from pyro.ops.rings import MarginalRing

#: The Pyro release this module was written and checked against.
TESTED_PYRO = "1.9.2"

#: (owner, private name, what pyrovae uses it for): looked up at import.
REQUIRED = (
    (traceenum_elbo, "_compute_model_factors", "the factors TraceEnum_ELBO sums"),
    (traceenum_elbo, "_compute_dice_elbo", "one particle's TraceEnum_ELBO"),
    (traceenum_elbo, "_get_common_scale", "the common-scale check of enumerated sites"),
    (traceenum_elbo, "Dice", "the Dice class TraceEnum_ELBO's particles use"),
    (ELBO, "_get_traces", "the particles' (model, guide) traces of an ELBO"),
    (ELBO, "_guess_max_plate_nesting", "the plate nesting an ELBO guesses"),
    (Dice, "_get_log_factors", "the Dice factors of an ordinal"),
    (infer_util, "_fulldot", "the sum of a product of packed tensors"),
)


class PyroInternalsChanged(ImportError):
    """The installed Pyro lacks a private name pyrovae relies on."""


def _check_required() -> None:
    for owner, name, use in REQUIRED:
        if not hasattr(owner, name):
            raise PyroInternalsChanged(
                f"pyrovae needs {owner.__name__}.{name} ({use}), which Pyro {pyro.__version__} "
                f"does not have; install the Pyro pyrovae was checked against: "
                f"pip install 'pyro-ppl=={TESTED_PYRO}'"
            )


_check_required()


def elbo_traces(
    elbo: ELBO, model: Callable, guide: Callable, args: tuple, kwargs: dict | None = None
) -> Iterator[tuple[Any, Any]]:
    """The (model trace, guide trace) of each of ``elbo``'s particles, as its own loss gets
    them: ``pyro.infer.elbo.ELBO._get_traces`` (vectorized particles as one pair; the traces
    checked, packed where the ELBO packs them, and scored)."""
    return elbo._get_traces(model, guide, args, kwargs or {})


def guess_max_plate_nesting(
    elbo: ELBO, model: Callable, guide: Callable, args: tuple, kwargs: dict | None = None
) -> None:
    """Set ``elbo.max_plate_nesting`` by running the programs once, as Pyro does on an
    ELBO's first call: ``pyro.infer.elbo.ELBO._guess_max_plate_nesting``."""
    elbo._guess_max_plate_nesting(model, guide, args, kwargs or {})


def packed_dims(term: torch.Tensor) -> str:
    """The dim symbols of a packed tensor, one character per dim (``pyro.ops.packed``'s
    ``tensor._pyro_dims``)."""
    return term._pyro_dims


def set_packed_dims(term: torch.Tensor, dims: str) -> torch.Tensor:
    """Name the dims of a tensor as ``pyro.ops.packed`` does (``tensor._pyro_dims``)."""
    term._pyro_dims = dims
    return term


def dim_to_symbol(site: dict) -> dict:
    """The map from a site's batch dims to the symbols of a packed trace, which
    ``Trace.pack_tensors`` stores in ``site["infer"]["_dim_to_symbol"]``."""
    return site["infer"]["_dim_to_symbol"]


def enumerate_dim(site: dict) -> int | None:
    """The dim on which Pyro's enumeration put the site's values (``EnumMessenger`` stores it
    in ``site["infer"]["_enumerate_dim"]``), or None for a site that is not enumerated."""
    return site["infer"].get("_enumerate_dim")


@contextmanager
def _swapped(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` is ``value`` while the block runs (Pyro's functions look these names up
    as module globals at each call)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def compute_model_factors(
    model_trace: Any, guide_trace: Any, check: Callable[[list], Any] | None = None
) -> tuple:
    """``pyro.infer.traceenum_elbo._compute_model_factors``: (marginal costs by ordinal,
    log-factors of the sites to sum out by ordinal, each site's ordinal, the dims to sum,
    their common scale); with ``check`` given, Pyro's check that the summed sites share one
    scale (``traceenum_elbo._get_common_scale``) is ``check`` while it runs."""
    if check is None:
        return traceenum_elbo._compute_model_factors(model_trace, guide_trace)
    with _swapped(traceenum_elbo, "_get_common_scale", check):
        return traceenum_elbo._compute_model_factors(model_trace, guide_trace)


def compute_dice_elbo(
    model_trace: Any,
    guide_trace: Any,
    check: Callable[[list], Any] | None = None,
    dice: type[Dice] = Dice,
) -> torch.Tensor | float:
    """One particle's ELBO from packed traces, by Pyro's own
    ``pyro.infer.traceenum_elbo._compute_dice_elbo``: the model's enumerated sites summed out
    (``contract_tensor_tree``), then the expected costs under the guide's Dice factors. While
    it runs, the common-scale check is ``check`` (when given) and the Dice class is ``dice``
    (e.g. :class:`BranchFreeDice`)."""
    with _swapped(traceenum_elbo, "Dice", dice):
        if check is None:
            return traceenum_elbo._compute_dice_elbo(model_trace, guide_trace)
        with _swapped(traceenum_elbo, "_get_common_scale", check):
            return traceenum_elbo._compute_dice_elbo(model_trace, guide_trace)


class BranchFreeDice(Dice):
    """``pyro.infer.util.Dice`` whose expectation reads no tensor value back to Python.

    ``Dice.compute_expectation`` (Pyro 1.9.2) computes sum over ordinals t and cost terms c
    of sum_i P_t(i) c(i), and where some P_t(i) is 0 (c(i) may then be -inf) it drops those
    entries with ``masked_select`` after testing ``mask.all()`` in Python: a data-dependent
    branch that stops a graph capture. Here the entries are zeroed with ``torch.where(P > 0,
    c, 0)`` instead: the same value, and the same gradients (neither form passes a gradient
    to c where P = 0, and both pass P a zero one there), with the same operations on every
    call.

    Why a copy: the branch sits in the middle of the one method, after the marginals are
    computed from ``_get_log_factors`` and before they are summed, and no smaller method of
    ``Dice`` can be overridden to change it. The lines other than that branch are Pyro's;
    ``tests/infer/test_pyro_internals.py`` checks this class against Pyro's ``Dice`` on
    every path (no zero probability, a zero probability, a constant log-factor of a
    sequentially drawn site, a cost with no factor of its dims) and fails, naming the method,
    when Pyro's source of it changes.
    """

    def compute_expectation(self, costs: dict) -> torch.Tensor | float:
        """sum over ordinals t and cost terms c of sum_i P_t(i) c(i), with 0 where P_t = 0.

        Args:
            costs: ordinal -> list of packed cost tensors.
        """
        with shared_intermediates() as cache:
            ring = MarginalRing(cache=cache)
            expected_cost: torch.Tensor | float = 0.0
            for ordinal, cost_terms in costs.items():
                log_factors = self._get_log_factors(ordinal)
                scale = math.exp(sum(x for x in log_factors if not isinstance(x, torch.Tensor)))
                log_factors = [x for x in log_factors if isinstance(x, torch.Tensor)]

                # One marginal query per set of dims that a cost term has (as Pyro's Dice).
                queries: dict[frozenset, Any] = {
                    frozenset(cost._pyro_dims): None for cost in cost_terms
                }
                for log_factor in log_factors:
                    key = frozenset(log_factor._pyro_dims)
                    if queries.get(key, False) is None:
                        queries[key] = log_factor
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    if queries[key] is None:
                        query = torch.zeros_like(cost)
                        query._pyro_dims = cost._pyro_dims
                        log_factors.append(query)
                        queries[key] = query

                sum_dims = set().union(*(x._pyro_dims for x in log_factors)) - ordinal
                for query in queries.values():
                    require_backward(query)
                root = ring.sumproduct(log_factors, sum_dims)
                root._pyro_backward()
                probs = {key: query._pyro_backward_result.exp() for key, query in queries.items()}

                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    prob = probs[key]
                    prob._pyro_dims = queries[key]._pyro_dims
                    cost, prob = packed.broadcast_all(cost, prob)
                    # The changed branch: Pyro drops the P = 0 entries after mask.all().
                    cost = torch.where(prob > 0, cost, cost.new_zeros(()))
                    expected_cost = expected_cost + scale * fulldot(prob, cost)
        return expected_cost


def fulldot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_i a_i b_i over every entry: ``pyro.infer.util._fulldot``."""
    return infer_util._fulldot(a, b)
