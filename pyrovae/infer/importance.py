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

import pyro
import torch
from pyro.infer.util import is_validation_enabled

from ..errors import user_stacklevel
from ..rng import aside
from .batches import Data, make_batches
from .denormals import flushed_denormals
from .distributed import shard_bounds, world
from .marginal import (
    LogMarginal,
    NonFiniteWeightsWarning,
    listed_rows,
    merge_shares,
    nonfinite_rows,
    refuse_rows,
    weight_statistics,
)
from .modes import evaluated
from .passes import (
    PROPOSALS,
    default_max_elements,
    log_importance_weights,
    plate_nesting,
)
from .plates import find_data_plate, named_data_plate, retracer
from .progress import progress_bar
from .proposals import honest_statistics, proposal_kind
from .sites import WeightedSites, refuse_point_masses
from .vectorized import vectorizable
from .weights import enumerated_values, log_weights_from_traces, trace_pair


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
            :func:`~pyrovae.infer.passes.default_max_elements` by default.
        particle_chunk: particles per vectorized pass; by default as many as keep the
            ``batch * particle_chunk * D * E`` activations within ``max_elements``, where E
            is the number of joint values of the enumerated sites
            (:func:`~pyrovae.infer.passes.enumerated_size`).
        keep_log_weights: also return the (N, K) log weights (for PSIS plots, ArviZ).
        progress: a tqdm bar over examples.
        on_nonfinite: what an example whose weights give no estimate (a NaN or +inf weight,
            or every weight 0) does: ``"raise"`` :class:`~pyrovae.infer.marginal.NonFiniteWeights`
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
    result = merge_shares(
        [p for _, p in parts if p is not None], [s for s, p in parts if p is not None]
    )
    masked = result.masked
    if on_nonfinite == "raise":
        refuse_rows(masked)
        result.masked = None
    elif bool(masked.any()):
        _warn_masked(masked)
    return result


def _warn_masked(masked: torch.Tensor) -> None:
    rows = masked.nonzero().flatten().tolist()
    warnings.warn(
        f"log_marginal: {len(rows)} of {len(masked)} example(s) [{listed_rows(rows)}] have "
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
    (:func:`~pyrovae.infer.passes.enumerated_size`) and what the proposal draws
    (:func:`~pyrovae.infer.proposals.proposal_kind`), from one draw outside the caller's
    random streams."""
    with aside():
        model_trace, guide_trace = trace_pair(
            model, guide if proposal == "guide" else None, args, 1, nesting
        )
        if data_plate is None:  # found once, here, for every pass (a plate of fixed size too)
            data_plate = find_data_plate(model_trace, args[0].shape[0], None, retracer(model, args))
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
