"""A Pyro loss captured once as a graph of tensor operations and replayed on later steps.

An eager SVI step runs the model and the guide under Pyro's effect handlers: every
sample site passes through the messenger stack, the traces are checked and scored,
and Pyro's ELBOs read each site's log-density back with ``.item()``. That Python work
is the same on every step with a batch of the same shape, and on a small network it
costs as much as the arithmetic. :class:`CapturedLoss` records the arithmetic once
per batch signature with :func:`torch.fx.experimental.proxy_tensor.make_fx` (the
parameters and the batch are the graph's inputs; random draws, such as the
reparameterised noise eps in z = mu + sigma * eps, stay random operations and are
drawn afresh on every replay) and replays the graph on later steps. The Pyro program
stays the source of truth: a graph is used only after its loss and its gradients
match Pyro's own ``differentiable_loss`` on the same batch and the same random stream,
and the loss is compared again at the start of every epoch (``recheck``: the epoch's first
replayed step; where it disagrees, every graph is dropped and captured again at its next
use), so a model whose Python constants change between epochs (an annealed weight
kept as a float) is captured again. A tensor the programs read but do not receive as an
argument (the Trainer's KL warm-up weight, a 0-dimensional tensor it updates in place) is
read by the graph at every replay, so changing its value in place needs no new capture.

What is captured:

- :class:`~pyro.infer.Trace_ELBO` with a fully reparameterised guide:
  loss = -(sum_model log p - sum_guide log q), averaged over particles.
- :class:`~pyro.infer.TraceMeanField_ELBO`: the same with KL(q || p) in closed form
  wherever torch's ``kl_divergence`` knows the pair.
- :class:`~pyro.infer.TraceEnum_ELBO` (the mixture's SVI, an HMM under ``pyro.markov``,
  any program with enumerated sites) and the semi-supervised ELBO: Pyro's traces, its
  contraction of the model's enumerated sites and its Dice factors, with the one
  data-dependent branch of Pyro's Dice (``mask.all()`` before dropping the entries of
  probability 0) replaced by an equal ``where``, and its check that the summed sites share
  one scale done without reading a tensor scale back (a KL warm-up's weight on a mixture
  prior), :mod:`~pyrovae.infer.enum_loss`.
- Any other ELBO (IWAE, a user's own): its own ``differentiable_loss``, where that runs
  without reading values back to Python.

A program that cannot be captured (data-dependent control flow, parameters outside
the model's and guide's modules, module buffers, a guide site without ``rsample``) or
whose graph disagrees with Pyro falls back to the eager loss for that batch signature;
``reasons`` records why (and the ``pyrovae`` logger says so at INFO level). Pyro's
validation (distribution arguments, site shapes) runs on the eager reference steps:
the first step of each batch signature and of each epoch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from torch import nn
from torch._guards import detect_fake_mode
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call
from torch.fx.experimental import proxy_tensor
from torch.fx.experimental.proxy_tensor import make_fx

from ..rng import initialised_cuda_devices
from .graph_losses import NotCapturable, loss_function
from .pyro_internals import guess_max_plate_nesting

LOG = logging.getLogger("pyrovae")

#: Tolerances of the check of a captured graph against Pyro's eager loss.
RTOL, ATOL = 1e-4, 1e-6

Signature = tuple


class _Programs(nn.Module):
    """The model's and the guide's modules under one root, so that ``functional_call`` can
    substitute every parameter while the (possibly wrapped) programs run."""

    def __init__(
        self,
        modules: Sequence[nn.Module],
        model: Callable,
        guide: Callable,
        loss: Callable[..., torch.Tensor],
    ) -> None:
        super().__init__()
        self.programs = nn.ModuleList(modules)
        self.__dict__["_calls"] = (model, guide, loss)  # plain attributes, not submodules

    def forward(self, *args: Any) -> torch.Tensor:
        model, guide, loss = self._calls
        return loss(model, guide, *args)


class CapturedLoss:
    """``loss(*args) = elbo.differentiable_loss(model, guide, *args)``, replayed from graphs.

    Args:
        elbo: the Pyro objective whose loss is captured.
        model, guide: the programs as the ELBO calls them (possibly wrapped, e.g. by
            :func:`~pyrovae.infer.scale.scale_latents`).
        modules: the ``nn.Module`` objects the programs are (their parameters become the
            graph's inputs).
        params: every tensor the optimizer trains; capture is off unless each of them is
            a parameter of ``modules`` (one captured as a constant would get no gradient).
        enabled: False always runs the eager loss (Pyro's own, every step).

    ``reason`` says why capture is off (None while it is on); ``graphs`` maps each batch
    signature (shapes, dtypes, devices of the arguments) to its graph, or to None where
    that signature runs eagerly, and ``reasons`` maps those signatures to the cause.

    A recheck compares one graph, the first replayed after it, by the loss's value, and
    drops them all if it disagrees: a changed constant changes every signature's loss, and
    one comparison per epoch costs one eager forward pass whatever the number of batch
    shapes (sequences cut to their lengths have several). A new capture is compared by value
    and gradients. Not seen: a change that alters the loss of some batch shapes only, until
    one of those is the first compared, or the gradients only, not the loss.
    """

    def __init__(
        self,
        elbo: ELBO,
        model: Callable,
        guide: Callable,
        modules: Sequence[nn.Module],
        params: Sequence[torch.Tensor] = (),
        enabled: bool = True,
    ) -> None:
        self.elbo, self.model, self.guide = elbo, model, guide
        self.graphs: dict[Signature, Any] = {}
        self.reasons: dict[Signature, str] = {}
        #: Whether the next replayed step is compared with Pyro's (see :meth:`recheck`).
        self._check_next = False
        self.reason: str | None = None if enabled else "capture switched off"
        self._root = _Programs(modules, model, guide, loss_function(elbo))
        named = dict(self._root.named_parameters())
        self._names, self._params = list(named), list(named.values())
        if enabled and any(True for _ in self._root.buffers()):
            self.reason = "the modules have buffers (their in-place updates are not replayed)"
        inputs = {id(p) for p in self._params}
        if enabled and any(id(p) not in inputs for p in params):
            self.reason = "some trained parameters live outside the model's and guide's modules"
        if enabled and not modules:
            self.reason = "the model and guide are not torch modules"

    @property
    def enabled(self) -> bool:
        return self.reason is None

    def recheck(self) -> None:
        """Compare the next replayed graph with the eager loss; if it disagrees, drop every
        graph (each is captured again, and checked, at its next use)."""
        self._check_next = True

    def __call__(self, *args: Any) -> torch.Tensor:
        key = _signature(args) if self.enabled else None
        if key is None:
            return self._eager(*args)
        graph = self.graphs.get(key, _MISSING)
        if graph is None:
            with pyro.validation_enabled(False):  # checked on this signature's first step
                return self._eager(*args)
        if graph is _MISSING:
            return self._reference_step(key, args)
        if self._check_next:
            return self._recheck_step(key, args, graph)
        return graph(*self._params, *args)

    def _eager(self, *args: Any) -> torch.Tensor:
        return self.elbo.differentiable_loss(self.model, self.guide, *args)

    def _recheck_step(self, key: Signature, args: tuple, graph: Any) -> torch.Tensor:
        """The pending recheck: Pyro's loss against the graph's replay on the same random
        stream. Agreeing, the replay is the step's loss (a recheck costs one eager forward
        pass); otherwise every graph is dropped and the step is a reference step that
        captures this signature anew, loss and gradients checked."""
        self._check_next = False
        before = _rng_state()
        eager = self._eager(*args).detach()  # (Pyro refuses to build its loss without grad)
        _set_rng_state(before)
        replay = graph(*self._params, *args)
        if torch.allclose(replay.detach(), eager, rtol=RTOL, atol=ATOL):
            return replay
        _set_rng_state(before)
        self.graphs = {k: g for k, g in self.graphs.items() if g is None}
        return self._reference_step(key, args)

    def _reference_step(self, key: Signature, args: tuple) -> torch.Tensor:
        """An eager step whose loss and gradients check a graph captured from it; the random
        stream continues as after the eager step alone."""
        if getattr(self.elbo, "max_plate_nesting", 0) == float("inf"):
            # Pyro guesses the nesting on its first call by running the programs once;
            # guess now, off the random stream, so the eager step and the replay below
            # draw the same numbers.
            elbo_log = logging.getLogger("pyro.infer.elbo")
            level = elbo_log.level
            elbo_log.setLevel(logging.WARNING)  # Pyro logs its guess at INFO
            try:
                with torch.random.fork_rng(devices=initialised_cuda_devices()):
                    guess_max_plate_nesting(self.elbo, self.model, self.guide, args)
            finally:
                elbo_log.setLevel(level)
        before = _rng_state()
        loss = self._eager(*args)
        after = _rng_state()
        try:
            graph = self._capture(args)
            if not self._agrees(graph, loss, args, before):
                raise NotCapturable("the captured graph's loss or gradients differ from Pyro's")
            self.graphs[key] = graph
        except Exception as error:  # noqa: BLE001 - any failure means: run eagerly
            self.graphs[key] = None
            self.reasons[key] = f"{type(error).__name__}: {error}"
            LOG.info(
                "the loss runs eagerly (through Pyro every step) for batches of shape %s: %s",
                [tuple(a.shape) for a in args],
                self.reasons[key],
            )
        finally:
            _set_rng_state(after)
        return loss

    def _capture(self, args: tuple) -> Any:
        def functional(*flat: torch.Tensor) -> torch.Tensor:
            params = dict(zip(self._names, flat[: len(self._names)], strict=True))
            return functional_call(self._root, params, flat[len(self._names) :])

        with (
            torch.random.fork_rng(devices=initialised_cuda_devices()),
            pyro.validation_enabled(False),
            warnings.catch_warnings(),
            _shared_fake_mode(),
        ):
            warnings.simplefilter("ignore")
            graph = make_fx(functional)(*self._params, *args)
        graph.graph.eliminate_dead_code()  # e.g. the plate's unused index range
        graph.recompile()
        return graph

    def _agrees(self, graph: Any, loss: torch.Tensor, args: tuple, rng: tuple) -> bool:
        _set_rng_state(rng)
        replay = graph(*self._params, *args)
        if not torch.allclose(replay.detach(), loss.detach(), rtol=RTOL, atol=ATOL):
            return False
        expected = _grads(loss, self._params, retain_graph=True)
        for got, want in zip(_grads(replay, self._params), expected, strict=True):
            tolerance = ATOL + RTOL * float(want.abs().max()) if want.numel() else ATOL
            if not torch.allclose(got, want, rtol=RTOL, atol=tolerance):
                return False
        return True


_MISSING = object()


@contextmanager
def _shared_fake_mode() -> Iterator[None]:
    """While ``make_fx`` traces real tensors, describe each traced value (the shape, stride,
    dtype and device it records on the graph's nodes) with one fake-tensor mode instead of
    a new mode per operation, which torch builds in ``proxy_tensor.extract_val`` and which
    is most of the capture's time (capture of a 64-step deep Markov model: 15 s, 7 s with
    one mode). The recorded metadata are the same; where this torch version has no such
    function the capture runs as torch does it."""
    original = getattr(proxy_tensor, "extract_val", None)
    if original is None or not hasattr(proxy_tensor, "is_fake"):
        yield
        return
    mode = FakeTensorMode(allow_fallback_kernels=True)

    def extract_val(val: Any, include_real: bool = False) -> Any:
        if (
            isinstance(val, torch.Tensor)
            and not proxy_tensor.is_fake(val)
            and not val.is_sparse
            and detect_fake_mode(val) is None
        ):
            with mode:
                return torch.empty_strided(
                    val.shape, val.stride(), device=val.device, dtype=val.dtype
                )
        return original(val, include_real)

    proxy_tensor.extract_val = extract_val
    try:
        yield
    finally:
        proxy_tensor.extract_val = original


def _signature(args: tuple) -> Signature | None:
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    return tuple((tuple(a.shape), a.dtype, a.device, a.requires_grad) for a in args)


def _grads(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> list:
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _rng_state() -> tuple:
    devices = initialised_cuda_devices()
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for device, value in zip(initialised_cuda_devices(), cuda, strict=False):
        torch.cuda.set_rng_state(value, device)
