"""Importance-sampling estimates of the marginal likelihood log p(x), per example.

With K draws z_k from a proposal r(z | x),

    log p(x) ~ log (1/K) sum_k w_k,    w_k = p(x, z_k) / r(z_k | x),

an estimate that is consistent as K grows and, by Jensen, biased low for finite K
(its expectation is the IWAE bound, Burda et al. 2016). The proposal is the guide
q(z | x) (``proposal="guide"``) or the prior p(z) (``"prior"``, naive Monte Carlo:
w_k = p(x | z_k), unbiased for p(x) but with enormous variance in high dimension).
Latent sites that the model enumerates (``infer={"enumerate": "parallel"}``) and
the guide does not sample, and sites the guide enumerates (the class y of the
semi-supervised VAE), are summed exactly, not sampled: with y enumerated in the guide
each draw k gives w_k = sum_y p(x, y, z_k^y) / q(z_k^y | x, y), z_k^y ~ q(z | x, y), an
unbiased estimate of p(x) = sum_y p(x, y).

Beside each estimate come its delta-method standard error, the importance-sampling
effective sample size 1 / sum_k wbar_k^2 (normalised weights wbar) and the Pareto
k-hat of the weights' tail (Vehtari et al. 2024; above 0.7 the estimate is not
reliable).

Under torch.distributed (e.g. ``torchrun``) the examples of in-memory tensors are split
over the ranks in contiguous shares, each rank estimates its own, and every rank returns
the whole result in the data's order (each example's draws come from its rank's stream).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled

from ..errors import user_stacklevel
from ..rng import initialised_cuda_devices
from .batches import Data, make_batches
from .denormals import flushed_denormals
from .distributed import shard_bounds, world
from .modes import evaluated
from .plates import named_data_plate
from .progress import progress_bar
from .proposals import EXACT_WHY, KHAT_DISCRETE, STDERR_TIED, honest_statistics, proposal_kind
from .psis import pareto_khat
from .pyro_internals import enumerate_dim
from .sites import WeightedSites, refuse_point_masses
from .weights import enumerated_values, log_weights_from_traces, trace_pair

PROPOSALS = ("guide", "prior")


def default_max_elements(device: torch.device | str | None = None) -> int:
    """Numbers per vectorized pass of :func:`log_marginal`: 2**21 (8 MB of float32) on a
    CPU, where a pass that stays in cache is fastest (K = 5000 on a 784-400-50 VAE: 4.7 s
    per 200 images against 11.6 s at 2**26, ``benchmarks/svi_step.py --eval-images``), and
    2**26 on a GPU, where larger passes keep it busy."""
    return 2**26 if torch.device(device or "cpu").type == "cuda" else 2**21


@dataclass
class LogMarginal:
    """Per-example results of :func:`log_marginal`; tensors are (N,) unless stated."""

    log_likelihood: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor
    khat: torch.Tensor
    num_samples: int
    proposal: str
    elbo: torch.Tensor | None = None  # mean_k log w_k: an ELBO estimate (guide proposal)
    log_weights: torch.Tensor | None = None  # (N, K) when asked for
    worst_index: int = -1  # the example with the largest k-hat ...
    worst_log_weights: torch.Tensor | None = None  # ... and its log weights (K,)
    #: What ``log_likelihood`` estimates: ``"log p(x)"``, or with global latents
    #: ``"log posterior predictive"``, log E_{q(theta)} p(x_n | theta).
    estimand: str = "log p(x)"
    global_sites: tuple[str, ...] = ()  # the global latents conditioned on
    #: (N,) bool: examples left out for non-finite weights (``on_nonfinite="mask"``), or None.
    masked: torch.Tensor | None = None
    #: What the proposal draws (:mod:`pyrovae.infer.proposals`): ``"exact"`` (nothing: every
    #: latent summed), ``"continuous"``, ``"discrete"`` (k-hat not applicable, NaN; the
    #: standard error NaN where all K weights tie) or ``"mixed"``.
    kind: str = "continuous"

    def _kept(self, values: torch.Tensor) -> torch.Tensor:
        return values if self.masked is None else values[~self.masked]

    def mean(self) -> float:
        """Mean log-likelihood per example (nats), over the examples not masked."""
        return float(self._kept(self.log_likelihood).mean())

    def mean_stderr(self) -> float:
        """Standard error of :meth:`mean` from the per-example standard errors."""
        stderr = self._kept(self.stderr)
        stderr = stderr[~stderr.isnan()]  # a discrete proposal's tied rows: no SE to add
        if not len(stderr):
            return math.nan
        return float(stderr.pow(2).sum().sqrt() / len(stderr))

    def summary(self) -> dict[str, float | int | str | list | None]:
        """JSON-ready numbers: means, ESS and k-hat summaries, and which diagnostics do not
        apply and why: ``exact_examples`` and ``exact_why`` where every latent is summed (the
        only case with a standard error of 0 by construction); for a discrete proposal
        ``khat_not_applicable`` (the k-hat numbers are then None) and, where all K weights of
        an example tie, ``stderr_undefined_examples`` with ``stderr_undefined_why`` (the mean's
        standard error is then over the other examples)."""
        elbo = {}
        if self.elbo is not None:
            elbo = {"elbo": float(self._kept(self.elbo).mean())}
        masked = {}
        if self.masked is not None and bool(self.masked.any()):
            masked = {"masked_examples": self.masked.nonzero().flatten().tolist()}
        ess, khat = self._kept(self.ess), self._kept(self.khat)
        return {
            **elbo,
            **masked,
            "log_likelihood": self.mean(),
            "log_likelihood_stderr": self.mean_stderr(),
            "num_samples": self.num_samples,
            "proposal": self.proposal,
            "estimand": self.estimand,
            "ess_mean": float(ess.mean()),
            "ess_median": float(ess.median()),
            "ess_min": float(ess.min()),
            # -inf marks exactly equal weights (nothing sampled); JSON has no -inf: null then.
            "khat_mean": _finite_or_none(khat.mean()),
            "khat_max": _finite_or_none(khat.max()),
            "khat_share_above_0.7": float((khat > 0.7).float().mean()),
            **self._honesty(),
        }

    def _honesty(self) -> dict[str, object]:
        """The summary's account of the diagnostics that are exact or do not apply."""
        out: dict[str, object] = {"proposal_kind": self.kind}
        kept = len(self._kept(self.log_likelihood))
        if self.kind == "exact":
            out.update(exact_examples=kept, exact_why=EXACT_WHY)
        else:
            out["exact_examples"] = 0
        if self.kind == "discrete":
            out.update({"khat_share_above_0.7": None, "khat_not_applicable": KHAT_DISCRETE})
            rows = torch.arange(len(self.stderr))
            undefined = self.stderr.isnan()
            if self.masked is not None:
                undefined &= ~self.masked
            if bool(undefined.any()):
                out["stderr_undefined_examples"] = rows[undefined].tolist()
                out["stderr_undefined_why"] = STDERR_TIED
        return out


class NonFiniteWeights(ValueError):
    """Importance weights that give no estimate: NaN or +inf, or zero at every draw."""


class NonFiniteWeightsWarning(UserWarning):
    """Examples left out of an estimate for weights that give none (``on_nonfinite="mask"``)."""


def nonfinite_rows(log_weights: torch.Tensor) -> torch.Tensor:
    """(B,) bool: rows of log weights (B, K) that give no estimate (see :func:`check_weights`)."""
    bad = torch.isnan(log_weights).any(-1) | (log_weights == math.inf).any(-1)
    return bad | (log_weights == -math.inf).all(-1)


def check_weights(log_weights: torch.Tensor, offset: int = 0) -> None:
    """Refuse log weights (B, K) with a NaN or +inf, or an example whose every weight is 0
    (log w = -inf at all K draws), naming the examples (counted from ``offset``). A weight of
    zero among others is legitimate (a draw where p(x, z) = 0) and passes."""
    refuse_rows(nonfinite_rows(log_weights), offset)


def refuse_rows(bad: torch.Tensor, offset: int = 0) -> None:
    """:func:`check_weights` given the rows :func:`nonfinite_rows` found (B,) bool."""
    if bad.any():
        rows = (bad.nonzero().flatten() + offset).tolist()
        raise NonFiniteWeights(
            f"the importance weights of {len(rows)} example(s) [{_listed(rows)}] are not finite "
            "(NaN or +inf, or p(x, z) = 0 at every draw), so log p(x) has no estimate there: "
            "check those examples for NaN or values outside the likelihood's support, and the "
            "model and guide for densities that overflow"
        )


def _listed(rows: list[int]) -> str:
    """The first ten example indices, then "..." if there are more."""
    return ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")


def _finite_or_none(value: torch.Tensor) -> float | None:
    return float(value) if torch.isfinite(value) else None


def weight_statistics(log_weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """From log weights (N, K): log-mean-exp, its standard error, ESS and k-hat, each (N,).

    The standard error of log p-hat is the delta method's sd(w) / (sqrt(K) mean(w)). Weights
    equal to within 1e-9 (every latent summed exactly, or a guide equal to the posterior)
    are bounded, so their k-hat is -inf: PSIS has no tail to fit.
    """
    k = log_weights.shape[-1]
    estimate = torch.logsumexp(log_weights, -1) - math.log(k)
    w = torch.exp(log_weights - log_weights.max(-1, keepdim=True).values)
    mean = w.mean(-1)
    stderr = w.std(-1) / (math.sqrt(k) * mean) if k > 1 else torch.full_like(mean, math.inf)
    normalised = w / w.sum(-1, keepdim=True)
    ess = 1.0 / normalised.pow(2).sum(-1)
    khat = pareto_khat(log_weights)
    spread = log_weights.max(-1).values - log_weights.min(-1).values
    khat = torch.where(spread.to(khat.device) <= 1e-9, -math.inf, khat)
    return estimate, stderr, ess, khat


def plate_nesting(model: Callable, guide: Callable, args: tuple) -> int:
    """How many plates deep the programs go (as Pyro's ELBOs guess it); draws no randomness
    from the caller's streams."""
    with torch.random.fork_rng(devices=initialised_cuda_devices()), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    return traced_nesting(model_trace, guide_trace)


def traced_nesting(*traces: poutine.Trace) -> int:
    """How many plates deep the sample sites of these traces go (max -frame.dim)."""
    dims = [
        -frame.dim
        for trace in traces
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


def log_importance_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
    *,
    data_plate: str | None = None,
    scaled: bool = False,
) -> torch.Tensor:
    """log w = log p(x, z) - log r(z | x) for ``particles`` draws per example: (B, particles),
    with enumerated sites summed exactly (:mod:`pyrovae.infer.weights`).

    One vectorized pass: both programs run inside a particle plate left of their own
    plates (``nesting`` deep; traced once when not given), or without one for one particle.
    Differentiable (reparameterised draws), so the IWAE objective is built on it.
    ``allow_global`` conditions on global latents instead of refusing them (the weights then
    estimate the posterior predictive). ``data_plate`` names the data plate (found when
    None); ``scaled`` keeps the sites' scales (a training objective), else the weights are of
    the unscaled model (per-example numbers).
    """
    return weighted_pass(
        model,
        guide,
        args,
        particles,
        nesting,
        proposal,
        allow_global,
        data_plate=data_plate,
        scaled=scaled,
    )[0]


def importance_pass(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
) -> tuple[torch.Tensor, poutine.Trace]:
    """:func:`log_importance_weights` and the trace that holds the draws z (the guide's, or
    the model's under the prior proposal); a site's draws are (particles, B, ...), a particle
    plate even for one particle."""
    return weighted_pass(
        model, guide, args, particles, nesting, proposal, allow_global, particle_plate=True
    )[:2]


def weighted_pass(
    model: Callable,
    guide: Callable,
    args: tuple,
    particles: int,
    nesting: int | None = None,
    proposal: str = "guide",
    allow_global: bool = False,
    *,
    data_plate: str | None = None,
    scaled: bool = False,
    particle_plate: bool | None = None,
) -> tuple[torch.Tensor, poutine.Trace, WeightedSites]:
    """:func:`importance_pass` and how each site entered the weights."""
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if nesting is None:
        nesting = plate_nesting(model, guide, args)
    model_trace, guide_trace = trace_pair(
        model, guide if proposal == "guide" else None, args, particles, nesting, particle_plate
    )
    lw, sites = log_weights_from_traces(
        model_trace,
        guide_trace,
        nesting,
        args[0].shape[0],
        allow_global=allow_global,
        data_plate=named_data_plate(model, data_plate),
        scaled=scaled,
    )
    return lw, guide_trace if guide_trace is not None else model_trace, sites


def enumerated_size(
    model: Callable, guide: Callable, args: tuple, nesting: int, proposal: str = "guide"
) -> int:
    """How many values the enumerated sites hold at once (1 without any, C for the class of
    the semi-supervised VAE): a pass of :func:`log_importance_weights` holds that many
    copies of its activations. One draw, without gradients or the caller's random streams."""
    with (
        torch.no_grad(),
        torch.random.fork_rng(devices=initialised_cuda_devices()),
        poutine.block(),
    ):
        model_trace, guide_trace = trace_pair(
            model, guide if proposal == "guide" else None, args, 1, nesting
        )
    return enumerated_values(model_trace, guide_trace, nesting)


@evaluated
@torch.no_grad()
def log_marginal(
    model: Callable,
    guide: Callable,
    x: Data,
    *,
    num_samples: int = 1000,
    proposal: str = "guide",
    batch_size: int | None = None,
    particle_chunk: int | None = None,
    max_elements: int | None = None,
    keep_log_weights: bool = False,
    progress: bool = True,
    on_nonfinite: str = "raise",
    device: torch.device | str | None = None,
    data_plate: str | None = None,
) -> LogMarginal:
    """Importance-sampled log p(x) for every example of ``x``; see the module docstring.

    Args:
        model, guide: a pair following pyrovae's contract (data observed in plate "data").
        x: a tensor (N, D), a tuple of tensors (x, y) passed to the programs, or a Dataset.
        num_samples: K, draws of z per example.
        proposal: ``"guide"`` (q(z | x)) or ``"prior"`` (p(z), naive Monte Carlo).
        batch_size: examples per pass; by default as many as keep ``batch * K`` log weights,
            and one particle's ``batch * D * E`` activations, within ``max_elements`` numbers.
        max_elements: the size of one vectorized pass;
            :func:`~pyrovae.infer.importance.default_max_elements` by default.
        particle_chunk: particles per vectorized pass; by default as many as keep the
            ``batch * particle_chunk * D * E`` activations within ``max_elements``, where E
            is the number of joint values of the enumerated sites
            (:func:`~pyrovae.infer.importance.enumerated_size`).
        keep_log_weights: also return the (N, K) log weights (for PSIS plots, ArviZ).
        progress: a tqdm bar over examples.
        on_nonfinite: what an example whose weights give no estimate (a NaN or +inf weight,
            or every weight 0) does: ``"raise"`` :class:`~pyrovae.infer.importance.NonFiniteWeights`
            naming the examples (the default), or ``"mask"``: leave them out of
            :meth:`~pyrovae.infer.LogMarginal.mean` and the summary (``masked`` says which) with a
            warning naming them.
        device: where the batches go (the model and guide must already be there).
        data_plate: the name of the plate over the examples, where more than one plate of
            the batch's size holds the observations (found otherwise:
            :func:`~pyrovae.infer.plates.find_data_plate`; a model's ``data_plate``
            attribute names it too).

    Every number is of the unscaled model: ``poutine.scale`` and a subsampled data plate
    are training devices, and each example's estimate is of its own p(x_n). Masks are
    Pyro's: a masked observation counts nothing, and a masked enumerated step sums to one.
    A program that cannot run its particles in one vectorized plate (plain indexing such as
    ``locs[assignment]``) runs them one at a time, with a warning naming the cost.

    Returns:
        A :class:`~pyrovae.infer.LogMarginal`: ``log_likelihood``, ``stderr``, ``ess``, ``khat``,
        each (N,). With global latents (sites outside the data plate, drawn by the guide) it
        estimates the per-example log posterior predictive density log E_{q(theta)} p(x_n | theta),
        each particle drawing its own theta_k ~ q(theta) and importance-sampling the local
        latents given it; ``estimand`` and ``global_sites`` say so.

    Raises:
        ValueError: for what cannot be estimated per example (an observation outside the
            data plate, an enumerated global site, sequential enumeration, global latents
            under the prior proposal, a local latent drawn from a point mass such as
            ``AutoDelta``), naming the site.

    Example:
        An importance-sampled log p(x) of five digits under an (untrained) VAE is at least
        its ELBO on average, and its standard error shrinks as K grows:

        >>> import pyro
        >>> import pyrovae
        >>> from pyrovae.data import load_dataset
        >>> x = load_dataset("digits").test_x[:5]
        >>> vae = pyrovae.models.VAE(64, latent_dim=4, likelihood="continuous-bernoulli")
        >>> encoder = pyrovae.guides.GaussianEncoder(64, latent_dim=4)
        >>> pyro.set_rng_seed(0)
        >>> result = pyrovae.log_marginal(vae, encoder, x, num_samples=500, progress=False)
        >>> result.log_likelihood.shape, result.num_samples
        (torch.Size([5]), 500)
        >>> bool(result.log_likelihood.mean() >= result.elbo.mean())
        True
    """
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if on_nonfinite not in ("raise", "mask"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'mask', got {on_nonfinite!r}")
    options = {
        "num_samples": num_samples,
        "proposal": proposal,
        "batch_size": batch_size,
        "particle_chunk": particle_chunk,
        "max_elements": max_elements,
        "keep_log_weights": keep_log_weights,
        "device": device,
        "data_plate": named_data_plate(model, data_plate),
    }
    rank, ranks = world()
    tensors = (x,) if isinstance(x, torch.Tensor) else x
    if ranks > 1 and isinstance(tensors, (tuple, list)):
        return _sharded(model, guide, tuple(tensors), rank, ranks, on_nonfinite, progress, options)
    return _log_marginal(model, guide, x, on_nonfinite=on_nonfinite, progress=progress, **options)


def _sharded(
    model: Callable,
    guide: Callable,
    tensors: tuple[torch.Tensor, ...],
    rank: int,
    ranks: int,
    on_nonfinite: str,
    progress: bool,
    options: dict,
) -> LogMarginal:
    """:func:`log_marginal` of this rank's contiguous share of the rows, gathered from every
    rank in the rows' order; the refusal or the warning for non-finite weights comes after
    the gathering, on every rank alike, with the rows numbered in the whole data."""
    start, stop = shard_bounds(tensors[0].shape[0], rank, ranks)
    part = None
    if stop > start:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWeightsWarning)  # said once, below
            part = _log_marginal(
                model,
                guide,
                tuple(t[start:stop] for t in tensors),
                on_nonfinite="mask",
                progress=progress and rank == 0,
                **options,
            )
    parts: list = [None] * ranks
    torch.distributed.all_gather_object(parts, (start, part))
    result = _merge([p for _, p in parts if p is not None], [s for s, p in parts if p is not None])
    masked = result.masked
    if on_nonfinite == "raise":
        refuse_rows(masked)
        result.masked = None
    elif bool(masked.any()):
        _warn_masked(masked)
    return result


def _merge(parts: list[LogMarginal], starts: list[int]) -> LogMarginal:
    """One :class:`~pyrovae.infer.LogMarginal` of consecutive shares (their first rows at
    ``starts``)."""

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else torch.cat(values)

    worst = max(range(len(parts)), key=lambda i: _worst_khat(parts[i]))
    first = parts[0]
    return LogMarginal(
        cat("log_likelihood"),
        cat("stderr"),
        cat("ess"),
        cat("khat"),
        first.num_samples,
        first.proposal,
        elbo=cat("elbo"),
        log_weights=cat("log_weights"),
        worst_index=starts[worst] + parts[worst].worst_index,
        worst_log_weights=parts[worst].worst_log_weights,
        estimand=first.estimand,
        global_sites=first.global_sites,
        masked=cat("masked"),
        kind=first.kind,
    )


def _worst_khat(part: LogMarginal) -> float:
    """The k-hat of a share's worst example (-inf where it has none)."""
    if part.worst_index < 0:
        return -math.inf
    value = float(part.khat[part.worst_index])
    return value if not math.isnan(value) else -math.inf


def _warn_masked(masked: torch.Tensor) -> None:
    rows = masked.nonzero().flatten().tolist()
    warnings.warn(
        f"log_marginal: {len(rows)} of {len(masked)} example(s) [{_listed(rows)}] have "
        "importance weights that give no estimate (NaN or +inf, or p(x, z) = 0 at every "
        "draw); they are left out of the mean and the summary (LogMarginal.masked)",
        NonFiniteWeightsWarning,
        stacklevel=user_stacklevel(),
    )


def _log_marginal(
    model: Callable,
    guide: Callable,
    x: Data,
    *,
    num_samples: int,
    proposal: str,
    batch_size: int | None,
    particle_chunk: int | None,
    max_elements: int | None,
    keep_log_weights: bool,
    progress: bool,
    on_nonfinite: str,
    device: torch.device | str | None,
    data_plate: str | None,
) -> LogMarginal:
    """:func:`log_marginal` in this process, over every example of ``x``."""
    probe = next(iter(make_batches(x, batch_size or 2, shuffle=False, device=device)))
    dim = probe[0][0].numel()
    nesting = plate_nesting(model, guide, probe)
    sites, values, kind = _probe(model, guide, probe, nesting, proposal, data_plate)
    if num_samples > 1 and not vectorizable(model, guide, probe, nesting, proposal, sites.plate):
        warnings.warn(
            f"log_marginal: the program cannot run its {num_samples} particles in one "
            "vectorized plate (it indexes or reshapes in a way a particle dimension breaks), "
            f"so they run one at a time: {num_samples} passes per batch instead of one. "
            "Index with pyro.ops.indexing.Vindex (or ...-aware indexing) to vectorize it",
            stacklevel=user_stacklevel(),
        )
        particle_chunk = 1
    if max_elements is None:
        max_elements = default_max_elements(device)
    # Numbers per particle and example in a pass: D activations for each enumerated value.
    per_draw = max(dim, 64) * values
    if batch_size is None:
        batch_size = max(1, min(1000, max_elements // (num_samples * 4), max_elements // per_draw))
    if particle_chunk is None:
        particle_chunk = max(1, min(num_samples, max_elements // (batch_size * per_draw)))
    validate = is_validation_enabled()
    results: list[tuple[torch.Tensor, ...]] = []
    kept: list[torch.Tensor] = []
    bad_rows: list[torch.Tensor] = []
    seen, worst_index, worst_khat, worst = 0, -1, -math.inf, None
    batches = make_batches(x, batch_size, shuffle=False, device=device)
    total = getattr(batches, "num_examples", None)
    with (
        flushed_denormals(),
        progress_bar(
            total=total, disable=not progress, desc=f"log p(x), K={num_samples}", unit="ex"
        ) as bar,
    ):
        for args in batches:
            chunks = []
            for start in range(0, num_samples, particle_chunk):
                k = min(particle_chunk, num_samples - start)
                # Pyro's argument checks on the first pass only: the later ones repeat them.
                with pyro.validation_enabled(validate and not seen and not start):
                    weights = log_importance_weights(
                        model,
                        guide,
                        args,
                        k,
                        nesting,
                        proposal,
                        allow_global=True,
                        data_plate=sites.plate,
                    )
                chunks.append(weights)
            log_weights = torch.cat(chunks, dim=-1).double()
            bad = nonfinite_rows(log_weights)
            if on_nonfinite == "raise":
                refuse_rows(bad, seen)
            bad_rows.append(bad.cpu())
            estimate, stderr, ess, khat = weight_statistics(log_weights)
            stderr, khat = honest_statistics(kind, log_weights, stderr, khat)
            stats = (estimate, stderr, ess, khat, log_weights.mean(-1))
            results.append(tuple(t.cpu() for t in stats))
            if keep_log_weights:
                kept.append(log_weights.cpu())
            khat = torch.nan_to_num(stats[3], nan=-math.inf).masked_fill(bad, -math.inf)
            i = int(khat.argmax())
            if khat[i] > worst_khat or worst is None:
                worst_index, worst_khat, worst = seen + i, float(khat[i]), log_weights[i].cpu()
            seen += args[0].shape[0]
            bar.update(args[0].shape[0])
    estimate, stderr, ess, khat, mean_lw = (
        torch.cat(parts) for parts in zip(*results, strict=True)
    )
    masked = torch.cat(bad_rows) if on_nonfinite == "mask" else None
    if masked is not None and bool(masked.any()):
        _warn_masked(masked)
    return LogMarginal(
        estimate,
        stderr,
        ess,
        khat,
        num_samples,
        proposal,
        elbo=mean_lw if proposal == "guide" else None,
        log_weights=torch.cat(kept) if keep_log_weights else None,
        worst_index=worst_index,
        worst_log_weights=worst,
        estimand="log posterior predictive" if sites.global_latents else "log p(x)",
        global_sites=tuple(sites.global_latents),
        masked=masked,
        kind=kind,
    )


def _probe(
    model: Callable,
    guide: Callable,
    args: tuple,
    nesting: int,
    proposal: str,
    data_plate: str | None = None,
) -> tuple[WeightedSites, int, str]:
    """How the sites enter the weights (refusing, before any pass, what they cannot hold:
    :func:`~pyrovae.infer.sites.classify_sites`, and a local latent drawn from a point mass),
    how many enumerated values a pass holds
    (:func:`~pyrovae.infer.importance.enumerated_size`) and what the proposal draws
    (:func:`~pyrovae.infer.proposals.proposal_kind`), from one draw outside the caller's
    random streams."""
    with (
        torch.no_grad(),
        torch.random.fork_rng(devices=initialised_cuda_devices()),
        poutine.block(),
    ):
        model_trace, guide_trace = trace_pair(
            model, guide if proposal == "guide" else None, args, 1, nesting
        )
        # Every refusal of the weights (classify_sites', a sequential plate around an
        # enumerated site, ...) before any pass; then a point-mass proposal's.
        _, sites = log_weights_from_traces(
            model_trace,
            guide_trace,
            nesting,
            args[0].shape[0],
            allow_global=True,
            data_plate=data_plate,
        )
        refuse_point_masses(guide_trace, sites)
    kind = proposal_kind(sites, model_trace, guide_trace)
    return sites, enumerated_values(model_trace, guide_trace, nesting), kind


def vectorizable(
    model: Callable,
    guide: Callable,
    args: tuple,
    nesting: int,
    proposal: str = "guide",
    data_plate: str | None = None,
    particles: int = 3,
) -> bool:
    """Whether the pair runs its particles in one vectorized plate (as
    ``vectorize_particles=True`` runs them in Pyro's ELBOs) *and gets each particle's own
    weight*: the vectorized pass must run, and each of its ``particles`` columns must equal
    the weight of the programs run alone (no particle plate) on that particle's draws. A
    program that indexes with plain ``locs[assignment]`` either fails in the plate or, where
    the shapes happen to broadcast, gives other numbers; both are caught. One pass, outside
    the caller's random streams."""
    proposal_program = guide if proposal == "guide" else None
    rows = args[0].shape[0]

    def weights(model_program, guide_program, count):
        model_trace, guide_trace = trace_pair(model_program, guide_program, args, count, nesting)
        lw, _ = log_weights_from_traces(
            model_trace, guide_trace, nesting, rows, allow_global=True, data_plate=data_plate
        )
        return lw, (guide_trace if guide_trace is not None else model_trace)

    with (
        torch.no_grad(),
        torch.random.fork_rng(devices=initialised_cuda_devices()),
        poutine.block(),
        pyro.validation_enabled(False),  # the data's own NaNs are the caller's to report
    ):
        try:
            together, drawn = weights(model, proposal_program, particles)
        except (IndexError, RuntimeError, ValueError):
            return False
        for particle in range(particles):
            chosen = _one_particle(
                drawn, particle, particles, nesting, of_guide=proposal_program is not None
            )
            if chosen is None:
                return True  # draws this check cannot slice (enumerated by the guide): trusted
            replayed_guide = None
            if proposal_program is not None:
                replayed_guide = poutine.replay(proposal_program, trace=chosen)
            try:
                alone, _ = weights(poutine.replay(model, trace=chosen), replayed_guide, 1)
            except (IndexError, RuntimeError, ValueError):
                return False
            if not torch.allclose(
                together[:, particle], alone[:, 0], rtol=1e-4, atol=1e-3, equal_nan=True
            ):
                return False
    return True


def _one_particle(
    trace: poutine.Trace, particle: int, particles: int, nesting: int, of_guide: bool
) -> poutine.Trace | None:
    """The draws of one particle of a vectorized trace, as a trace to replay without the
    particle plate (the particle dim selected away); None where the trace enumerates a site
    of its own program (a guide's enumerated class), which this slicing cannot replay."""
    chosen = poutine.Trace()
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if enumerate_dim(site) is not None:
            if of_guide:
                return None
            continue  # the model's own enumerated site: enumerated again when replayed
        value = site["value"]
        event_dim = getattr(site["fn"], "event_dim", 0)
        position = value.dim() - event_dim - (nesting + 1)
        if position >= 0:
            if value.shape[position] == particles:
                value = value.select(position, particle)
            elif value.shape[position] == 1:
                value = value.squeeze(position)
        chosen.add_node(name, **{**site, "value": value})
    return chosen
