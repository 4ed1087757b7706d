"""The contract every (model, guide) pair inherits: a pair's test says only how to build it.

Subclass :class:`PairContract` and implement ``make_pair`` returning a :class:`Pair`: the two
programs, the arguments they are called with, the name of the objective the pair trains with
and, when its latents can be summed exactly, the per-example log p(x). A pair called in
several ways (with and without labels, ...) lists them in ``variants``; each contract test
then runs once per variant (``pytest_generate_tests`` in conftest.py) and ``make_pair``
receives the variant.

Every pair, with its own objective: the guide draws every latent the model does not
enumerate, the data are observed inside ``pyro.plate("data")``, the loss is finite and
reaches every parameter with a finite gradient, no parameter is shared (between model and
guide, between two instances, with Pyro's global store), ``state_dict`` round-trips, a plain
``SVI`` step trains, and :func:`~pyrovae.infer.choose_objective` reads the objective from the
program. Pairs with an exact oracle (``Pair.exact``) also check :func:`~pyrovae.log_marginal`,
Pyro's own ELBO (``TraceEnum_ELBO`` for an enumerated pair) and the importance-weighted bound
against it: with the latents summed (an empty guide) or drawn from the exact posterior, each
importance weight *is* p(x), to float tolerance in float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.poutine.util import site_is_subsample

from pyrovae import log_marginal
from pyrovae.infer import IWAE_ELBO, OBJECTIVES, check_program, choose_objective, make_objective
from pyrovae.infer.program import SUMMING_OBJECTIVES, enumerate_sites


@dataclass(frozen=True)
class Pair:
    """A (model, guide) pair as its test builds it.

    Attributes:
        model, guide: the Pyro programs (modules or plain functions).
        args: what both are called with: ``(x,)``, or ``(x, y)`` for labelled data.
        objective: the name in :data:`pyrovae.infer.OBJECTIVES` the pair trains with.
        exact: the exact log p(x) of each example (N,), when the pair can be summed exactly
            (float64 programs and data): the oracle of :func:`~pyrovae.log_marginal`.
        untouched: parameters the objective never reads with these arguments, by name
            (prefixes of ``"model.<name>"`` / ``"guide.<name>"``): the labelled SSVAE never
            calls its classifier q(y | x).
    """

    model: Callable
    guide: Callable
    args: tuple
    objective: str = "elbo"
    exact: torch.Tensor | None = None
    untouched: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.args, tuple):
            raise TypeError(f"Pair.args is the tuple passed to the programs, got {self.args!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not in {list(OBJECTIVES)}")

    @property
    def x(self) -> torch.Tensor:
        return self.args[0]

    @property
    def data(self) -> torch.Tensor | tuple:
        """The data as :func:`~pyrovae.log_marginal` takes them: x, or the tuple (x, y)."""
        return self.args[0] if len(self.args) == 1 else self.args

    def named_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The parameters of the programs that are modules, as ``"model.<name>"`` and
        ``"guide.<name>"``."""
        return {
            f"{role}.{name}": p
            for role, program in (("model", self.model), ("guide", self.guide))
            if isinstance(program, torch.nn.Module)
            for name, p in program.named_parameters()
        }

    def is_untouched(self, name: str) -> bool:
        return any(name == u or name.startswith(u + ".") for u in self.untouched)


def is_site(site: dict) -> bool:
    """A sample statement, not a plate's subsample site."""
    return site["type"] == "sample" and not site_is_subsample(site)


def trace_program(program: Callable, args: tuple) -> poutine.Trace:
    """One program's own trace (its sites' own marks), off the caller's random stream."""
    with torch.random.fork_rng(), poutine.block():
        return poutine.trace(program).get_trace(*args)


def trace_pair(model: Callable, guide: Callable, args: tuple) -> tuple:
    """(model trace, guide trace), the model replayed on the guide's draws; off the caller's
    random stream and out of any enclosing handler."""
    with torch.random.fork_rng(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    return model_trace, guide_trace


def plate_nesting(model: Callable, guide: Callable, args: tuple) -> int:
    """How many plates deep the programs' sample sites go (TraceEnum_ELBO's
    max_plate_nesting), counted on a trace here rather than asked of pyrovae."""
    return max(
        (
            -frame.dim
            for trace in trace_pair(model, guide, args)
            for site in trace.nodes.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
            if frame.vectorized
        ),
        default=0,
    )


def read_parameters(elbo: ELBO, model: Callable, guide: Callable, args: tuple) -> list:
    """The parameters one loss reads through ``param`` sites, as the unconstrained tensors
    ``SVI`` optimises (what it collects the same way)."""
    with poutine.trace(param_only=True) as tracer:
        elbo.loss(model, guide, *args)
    unique = {id(p): p for p in (s["value"].unconstrained() for s in tracer.trace.nodes.values())}
    return list(unique.values())


@pytest.mark.usefixtures("one_thread")  # tiny pairs: a second thread only slows them down
class PairContract:
    """Subclass and implement ``make_pair() -> Pair`` (``make_pair(variant)`` when the class
    lists ``variants``)."""

    #: The ways a pair is called (labels given or not, ...): one run of each test per variant.
    variants: tuple = ()

    def make_pair(self, *variant) -> Pair:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    # ---- building blocks -------------------------------------------------------------------

    def build(self, variant) -> Pair:
        pair = self.make_pair() if variant is None else self.make_pair(variant)
        assert isinstance(pair, Pair), f"make_pair returns a contract.Pair, got {type(pair)}"
        return pair

    def programs(self, pair: Pair) -> tuple[Callable, Callable]:
        """The programs as pyrovae trains them: discrete latents that the guide leaves to the
        model without an enumerate mark are marked (as ``fit`` does), so that Pyro's
        TraceEnum_ELBO sums them instead of drawing them from their prior."""
        report = check_program(pair.model, pair.guide, pair.args)
        return enumerate_sites(pair.model, report.unmarked_discrete), pair.guide

    def objective(self, pair: Pair, num_particles: int = 1) -> ELBO:
        """The pair's own objective, its plates counted from the program."""
        nesting = plate_nesting(pair.model, pair.guide, pair.args)
        return make_objective(
            pair.objective, num_particles=num_particles, max_plate_nesting=nesting
        )

    def parameters_or_skip(self, pair: Pair) -> dict[str, torch.nn.Parameter]:
        params = pair.named_parameters()
        if not params:
            pytest.skip("the programs are plain functions with no module parameters")
        return params

    def exact_or_skip(self, pair: Pair) -> torch.Tensor:
        if pair.exact is None:
            pytest.skip(
                "no exact oracle (Pair.exact is None): the pair's latents cannot be summed "
                "in closed form"
            )
        assert pair.exact.shape == (pair.x.shape[0],), "exact is the per-example log p(x)"
        return pair.exact

    # ---- every pair --------------------------------------------------------------------------

    def test_guide_samples_every_latent_the_model_does_not_enumerate(self, variant):
        pair = self.build(variant)
        model, guide = self.programs(pair)
        model_trace, guide_trace = trace_program(model, pair.args), trace_program(guide, pair.args)
        latents = {
            n
            for n, s in model_trace.nodes.items()
            if is_site(s) and not s["is_observed"] and not s["infer"].get("enumerate")
        }
        sampled = {n for n, s in guide_trace.nodes.items() if is_site(s)}
        assert latents == sampled

    def test_data_is_observed_inside_the_data_plate(self, variant):
        pair = self.build(variant)
        model_trace = trace_program(pair.model, pair.args)
        observed = [n for n, s in model_trace.nodes.items() if is_site(s) and s["is_observed"]]
        assert observed, "the model must observe its data"
        for name in observed:
            assert any(f.name == "data" for f in model_trace.nodes[name]["cond_indep_stack"])

    def test_loss_is_finite(self, variant):
        pair = self.build(variant)
        loss = self.objective(pair).loss(*self.programs(pair), *pair.args)
        assert math.isfinite(loss)

    def test_loss_reaches_every_parameter_with_a_finite_gradient(self, variant):
        pair = self.build(variant)
        for name in pair.untouched:
            assert any(pair.is_untouched(n) for n in pair.named_parameters()), name
        model, guide = self.programs(pair)
        read = read_parameters(self.objective(pair), model, guide, pair.args)
        if not read and not pair.named_parameters():
            pytest.skip("the programs have no parameters: nothing to differentiate")
        assert read, "the objective reads none of the pair's parameters"
        loss = self.objective(pair).differentiable_loss(model, guide, *pair.args)
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in read)
        read_ids = {id(p) for p in read}
        for name, p in pair.named_parameters().items():
            if pair.is_untouched(name):
                assert id(p) not in read_ids and p.grad is None, f"{name} is read"
            else:
                assert id(p) in read_ids, f"the objective never reads {name}"
                assert torch.isfinite(p.grad).all(), name

    def test_model_and_guide_never_share_a_tensor(self, variant):
        pair = self.build(variant)
        model, guide = self.programs(pair)
        self.objective(pair).loss(model, guide, *pair.args)
        params = pair.named_parameters()
        model_ptrs = {p.data_ptr() for n, p in params.items() if n.startswith("model.")}
        guide_ptrs = {p.data_ptr() for n, p in params.items() if n.startswith("guide.")}
        assert not model_ptrs & guide_ptrs
        # Only a plain-function program's own pyro.param sites may live in the global store.
        classic = set()
        for program in (pair.model, pair.guide):
            if not isinstance(program, torch.nn.Module):
                with torch.random.fork_rng(), poutine.block():
                    trace = poutine.trace(program, param_only=True).get_trace(*pair.args)
                classic |= set(trace.param_nodes)
        leaked = set(pyro.get_param_store().keys()) - classic
        assert not leaked, f"parameters leaked into the global store: {sorted(leaked)}"

    def test_two_instances_do_not_share_parameters(self, variant):
        first, second = self.build(variant), self.build(variant)
        self.parameters_or_skip(first)
        for pair in (first, second):
            self.objective(pair).loss(*self.programs(pair), *first.args)
        ptrs1 = {p.data_ptr() for p in first.named_parameters().values()}
        ptrs2 = {p.data_ptr() for p in second.named_parameters().values()}
        assert not ptrs1 & ptrs2

    def test_state_dict_round_trip_gives_the_same_loss(self, variant):
        pair = self.build(variant)
        self.parameters_or_skip(pair)
        modules = [p for p in (pair.model, pair.guide) if isinstance(p, torch.nn.Module)]
        with torch.no_grad():
            for p in pair.named_parameters().values():
                p.add_(0.1 * torch.randn_like(p))
        fresh = self.build(variant)
        copies = [p for p in (fresh.model, fresh.guide) if isinstance(p, torch.nn.Module)]
        assert any(
            not torch.equal(a, b)
            for a, b in zip(
                pair.named_parameters().values(),
                fresh.named_parameters().values(),
                strict=True,
            )
        ), "a fresh pair already equals the perturbed one: the round trip would prove nothing"
        for module, copy_ in zip(modules, copies, strict=True):
            copy_.load_state_dict(copy.deepcopy(module.state_dict()))
        elbo = self.objective(pair)
        pyro.set_rng_seed(1)
        a = elbo.loss(*self.programs(pair), *pair.args)
        pyro.set_rng_seed(1)
        b = elbo.loss(*self.programs(fresh), *pair.args)
        assert a == b

    def test_trains_under_plain_svi_step(self, variant):
        pair = self.build(variant)
        model, guide = self.programs(pair)
        read = read_parameters(self.objective(pair), model, guide, pair.args)
        if not read:
            pytest.skip("the programs have no parameters: nothing to train")
        untouched = [p for n, p in pair.named_parameters().items() if pair.is_untouched(n)]
        before = [p.detach().clone() for p in read]
        left = [p.detach().clone() for p in untouched]
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), self.objective(pair))
        evaluate = self.objective(pair, num_particles=64)
        with torch.no_grad():
            start = evaluate.loss(model, guide, *pair.args)
        for _ in range(150):
            svi.step(*pair.args)
        assert all(not torch.equal(a, b) for a, b in zip(before, read, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(left, untouched, strict=True))
        with torch.no_grad():
            end = evaluate.loss(model, guide, *pair.args)
        assert end < start

    def test_objective_is_read_from_the_program(self, variant):
        pair = self.build(variant)
        model_trace = trace_program(pair.model, pair.args)
        guide_trace = trace_program(pair.guide, pair.args)
        guide_sites = {n: s for n, s in guide_trace.nodes.items() if is_site(s)}
        left_to_model = [
            s
            for n, s in model_trace.nodes.items()
            if is_site(s) and not s["is_observed"] and n not in guide_sites
        ]
        # marked for enumeration by the guide, or by the model, or discrete and unmarked
        enumerates = any(s["infer"].get("enumerate") for s in guide_sites.values()) or any(
            s["infer"].get("enumerate") or s["fn"].has_enumerate_support for s in left_to_model
        )
        report = check_program(pair.model, pair.guide, pair.args)
        assert bool(report.enumerated) == enumerates
        assert choose_objective("auto", report) == ("enum" if enumerates else "elbo")
        assert choose_objective(pair.objective, report) == pair.objective
        if enumerates:
            assert pair.objective in SUMMING_OBJECTIVES
            with pytest.raises(ValueError, match="would sample them instead of summing them"):
                choose_objective("elbo", report)

    # ---- pairs with an exact oracle -----------------------------------------------------------

    def test_log_marginal_is_exact(self, variant):
        pair = self.build(variant)
        exact = self.exact_or_skip(pair)
        result = log_marginal(pair.model, pair.guide, pair.data, num_samples=7, progress=False)
        torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=1e-8)
        assert result.stderr.abs().max() < 1e-6
        assert not (result.khat > 0.7).any()
        assert result.estimand == "log p(x)"

    def test_batches_and_particle_chunks_change_nothing(self, variant):
        pair = self.build(variant)
        exact = self.exact_or_skip(pair)
        result = log_marginal(
            pair.model,
            pair.guide,
            pair.data,
            num_samples=5,
            batch_size=2,
            particle_chunk=2,
            progress=False,
        )
        torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=1e-8)

    def test_pyro_elbo_agrees_with_the_oracle(self, variant):
        """Pyro's own ELBO of the pair's objective: TraceEnum_ELBO for an enumerated pair."""
        pair = self.build(variant)
        exact = self.exact_or_skip(pair)
        model, guide = self.programs(pair)
        elbo = -self.objective(pair).loss(model, guide, *pair.args)
        if not any(is_site(s) for s in trace_program(guide, pair.args).nodes.values()):
            # nothing sampled: the ELBO is log p(x) itself
            assert abs(elbo - float(exact.sum())) < 1e-8
        else:  # a guide equal to the posterior: one draw's ELBO is log p(x) too
            assert abs(elbo - float(exact.sum())) < 1e-6

    def test_the_importance_weighted_bound_is_exact_too(self, variant):
        pair = self.build(variant)
        exact = self.exact_or_skip(pair)
        loss = IWAE_ELBO(num_particles=3).differentiable_loss(pair.model, pair.guide, *pair.args)
        assert abs(-loss.item() - float(exact.sum())) < 1e-6
