"""The contract every (model, guide) pair inherits: a new pair's test says how to build it.

Subclass :class:`PairContract` and implement ``make_pair`` returning (model, guide, x).
"""

from __future__ import annotations

import copy

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO


class PairContract:
    def make_pair(self):  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def test_guide_samples_every_latent_of_the_model(self):
        model, guide, x = self.make_pair()
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(model).get_trace(x)
        latents = {
            n
            for n, s in model_trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"]
        }
        sampled = {n for n, s in guide_trace.nodes.items() if s["type"] == "sample"}
        assert latents == sampled
        observed = [
            n for n, s in model_trace.nodes.items() if s["type"] == "sample" and s["is_observed"]
        ]
        assert observed, "the model must observe its data"
        for name in observed:
            assert any(f.name == "data" for f in model_trace.nodes[name]["cond_indep_stack"])

    def test_loss_is_finite_and_differentiable(self):
        model, guide, x = self.make_pair()
        loss = Trace_ELBO().differentiable_loss(model, guide, x)
        assert torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in [*model.parameters(), *guide.parameters()] if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)

    def test_model_and_guide_never_share_a_tensor(self):
        model, guide, x = self.make_pair()
        Trace_ELBO().loss(model, guide, x)
        model_ptrs = {p.data_ptr() for p in model.parameters()}
        guide_ptrs = {p.data_ptr() for p in guide.parameters()}
        assert not model_ptrs & guide_ptrs
        assert not list(pyro.get_param_store().keys()), "parameters leaked into the global store"

    def test_two_instances_do_not_share_parameters(self):
        (m1, g1, x), (m2, g2, _) = self.make_pair(), self.make_pair()
        Trace_ELBO().loss(m1, g1, x)
        Trace_ELBO().loss(m2, g2, x)
        ptrs1 = {p.data_ptr() for p in [*m1.parameters(), *g1.parameters()]}
        ptrs2 = {p.data_ptr() for p in [*m2.parameters(), *g2.parameters()]}
        assert not ptrs1 & ptrs2

    def test_state_dict_round_trip_gives_the_same_loss(self):
        model, guide, x = self.make_pair()
        with torch.no_grad():
            for p in [*model.parameters(), *guide.parameters()]:
                p.add_(0.1 * torch.randn_like(p))
        model2, guide2, _ = self.make_pair()
        model2.load_state_dict(copy.deepcopy(model.state_dict()))
        guide2.load_state_dict(copy.deepcopy(guide.state_dict()))
        pyro.set_rng_seed(1)
        a = Trace_ELBO().loss(model, guide, x)
        pyro.set_rng_seed(1)
        b = Trace_ELBO().loss(model2, guide2, x)
        assert a == b

    def test_trains_under_plain_svi_step(self):
        model, guide, x = self.make_pair()
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        before = [p.detach().clone() for p in [*model.parameters(), *guide.parameters()]]
        evaluate = Trace_ELBO(num_particles=64, vectorize_particles=True)
        with torch.no_grad():
            start = evaluate.loss(model, guide, x)
        for _ in range(150):
            svi.step(x)
        after = list(model.parameters()) + list(guide.parameters())
        assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=False))
        with torch.no_grad():
            end = evaluate.loss(model, guide, x)
        assert end < start


class EnumeratedContract:
    """Exact oracles every pair with enumerated sites inherits: with its latents summed (an
    empty guide) or drawn from the exact posterior, each importance weight *is* p(x), so
    :func:`~pyrovae.log_marginal` must return the closed-form log p(x) to float tolerance,
    with standard error 0 and no k-hat alarm, and Pyro's own TraceEnum_ELBO must agree.

    Subclass and implement ``make_enumerated`` returning ``(model, guide, x, exact)``:
    float64 programs, data ``x`` (N, ...) and the exact log p(x) (N,) computed by hand.
    """

    #: max_plate_nesting for Pyro's TraceEnum_ELBO.
    max_plate_nesting = 1
    #: True when the guide samples nothing, so the ELBO equals log p(x) too.
    empty_guide = True

    def make_enumerated(self):  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def test_log_marginal_is_exact(self):
        from pyrovae import log_marginal

        model, guide, x, exact = self.make_enumerated()
        result = log_marginal(model, guide, x, num_samples=7, progress=False)
        torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=1e-8)
        assert result.stderr.abs().max() < 1e-6
        assert not (result.khat > 0.7).any()
        assert result.estimand == "log p(x)"

    def test_batches_and_particle_chunks_change_nothing(self):
        from pyrovae import log_marginal

        model, guide, x, exact = self.make_enumerated()
        result = log_marginal(
            model, guide, x, num_samples=5, batch_size=2, particle_chunk=2, progress=False
        )
        torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=1e-8)

    def test_pyro_trace_enum_elbo_agrees_with_the_oracle(self):
        from pyro.infer import TraceEnum_ELBO

        model, guide, x, exact = self.make_enumerated()
        elbo = -TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting).loss(model, guide, x)
        if self.empty_guide:  # nothing sampled: the ELBO is log p(x) itself
            assert abs(elbo - float(exact.sum())) < 1e-8
        else:  # a guide equal to the posterior: one draw's ELBO is log p(x) too
            assert abs(elbo - float(exact.sum())) < 1e-6

    def test_the_importance_weighted_bound_is_exact_too(self):
        from pyrovae.infer import IWAE_ELBO

        model, guide, x, exact = self.make_enumerated()
        loss = IWAE_ELBO(num_particles=3).differentiable_loss(model, guide, x)
        assert abs(-loss.item() - float(exact.sum())) < 1e-6

    def test_objective_is_read_from_the_program(self):
        import pytest

        from pyrovae.infer.program import check_program, choose_objective

        model, guide, x, _ = self.make_enumerated()
        report = check_program(model, guide, (x,))
        assert report.enumerated
        assert choose_objective("auto", report) == "enum"
        with pytest.raises(ValueError, match="would sample them instead of summing them"):
            choose_objective("elbo", report)
