"""ArviZ InferenceData from importance sampling: posterior draws, per-example log p(x).

For chosen examples, K draws z_k ~ q(z | x) and their log weights
log w_k = log p(x, z_k) - log q(z_k | x) are kept. By default the draws are resampled
in proportion to w_k (sampling importance resampling), so ``posterior`` approximates
p(z | x) itself rather than q; ``resample=False`` keeps the guide's draws. Groups:

- ``posterior``: each latent site the guide draws in the data plate, dims
  ``(chain, draw, example, *rest)``, the rest named from the site's other plates and
  ``{site}_dim_{i}`` for its event dims. Each site the model enumerates (a mixture's cluster c,
  an HMM's states) has, per stored draw, a draw c ~ p(c | x, z) given that draw's z
  (:func:`~pyrovae.infer.assign`'s, temperature 1; with an empty guide, of p(c | x)) and, as
  ``{site}_probs`` with a last dim ``{site}_value``, the exact probabilities p(c = v | x, z)
  over the values of its support (their mean over the draws estimates p(c = v | x)). A site
  the guide enumerates (the semi-supervised VAE's class y) is drawn jointly with the latents
  drawn given it (see :func:`to_inference_data`), its p(y = v | x) estimated in
  ``sample_stats["{site}_probs_estimate"]``. A global
  latent (outside the data plate, drawn by the guide) holds the guide's K draws
  theta_k ~ q(theta), dims ``(chain, draw, *rest)``, not resampled: the weights are per
  example, and each example's draws were weighed given theta_k (``attrs["global_latents"]``).
- ``sample_stats``: per example (dim ``example``) ``importance_ess``, the importance effective
  sample size 1 / sum_k wbar_k^2 of the K guide draws (wbar_k = w_k / sum_j w_j), and
  ``importance_khat``, the Pareto k-hat of their weights (above 0.7 neither the draws nor
  that ESS can be trusted); per draw (chain, draw, example) ``log_weight``, and after
  resampling ``guide_draw``, which of the K guide draws each stored draw copies (its
  ``log_weight`` is that guide draw's), without it ``weight``, the normalised wbar_k.
- ``constant_data``: over all N examples (dim ``all_examples``), ``log_marginal``, the
  importance-sampled log p(x) (or, with global latents, the log posterior predictive;
  ``attrs["estimand"]`` says which), its ``log_likelihood_stderr``, ``ess`` and ``khat``.
- ``observed_data``: the examples.

The K draws are stored as two chains of K / 2 consecutive draws (``chain`` = 2): ArviZ's
R-hat needs two chains and, with one, every summary logs "Shape validation failed" about the
layout. The halves hold independent guide draws (or copies of them), so R-hat near 1 is
expected; a larger one says that few guide draws carry the weight.

Resampled draws are not independent: K copies of K guide draws hold about ``importance_ess``
independent draws' worth of information, not K. They are stored with the copies of one guide
draw next to each other, so the autocorrelation-based ``ess_bulk``, ``ess_tail`` and
``mcse_mean`` of ``az.summary`` see the repeats instead of reporting about K: on a conjugate
model its ``mcse_mean`` matches the actual spread of the resampled mean (the tests check it),
which is somewhat smaller than the conservative sqrt(var / importance_ess). They remain
per-quantity estimates made for Markov chains and go wrong where few guide draws carry the
weight (a small ``importance_ess``, a large ``importance_khat``); ``importance_ess`` is the
number to quote. With ``resample=False`` the draws are q's, independent, and ArviZ's
statistics describe q, not the posterior.

There is deliberately no ``log_likelihood`` group, so ``az.loo`` and ``az.waic`` refuse the
export (ArviZ's ``TypeError: log likelihood not found``) instead of returning a wrong number:
they need log p(x_n | theta_s) for posterior draws theta_s of *global* parameters, while a
fitted pair has point-estimated networks and one estimate of log p(x_n) per example. To
compare models, estimate log p(x) on held-out examples and pass
:func:`~pyrovae.diagnostics.elpd` of it to ``az.compare`` (:data:`NO_LOO`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..infer.importance import log_marginal
from ..infer.marginal import LogMarginal, weight_statistics
from ..infer.passes import plate_nesting, weighted_pass
from ..rng import initialised_cuda_devices
from .posterior_draws import arrange, enumerated_draws, guide_enumerated_pool
from .views import find_sites

#: Draws are stored as this many chains of consecutive draws: ArviZ's R-hat needs two, and
#: with one every ArviZ summary logs "Shape validation failed" for a layout, not a problem.
CHAINS = 2

#: Why the export has no ``log_likelihood`` group; stored in ``constant_data.attrs["loo"]``.
NO_LOO = (
    "no log_likelihood group: az.loo and az.waic need log p(x_n | theta_s) over posterior "
    "draws theta_s of global parameters, and a fitted (model, guide) pair has point estimates "
    "and one importance-sampled log p(x_n) per example (log_marginal here). Compare models on "
    "held-out examples with az.compare({name: pyrovae.diagnostics.elpd(log_marginal(model, "
    "guide, test_x)), ...}), or two of them with pyrovae.diagnostics.compare_log_likelihoods(a, "
    'b) on their constant_data["log_marginal"].'
)


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz

    return arviz


def resample_indices(log_weights: torch.Tensor, num_draws: int) -> torch.Tensor:
    """Multinomial resampling: log weights (E, K) -> indices (num_draws, E) into the K draws,
    drawn with probabilities wbar_k and sorted, so that the copies of one draw are adjacent."""
    probs = torch.softmax(log_weights.double(), -1)
    index = torch.multinomial(probs, num_draws, replacement=True)  # (E, num_draws)
    return index.sort(-1).values.T


def _chains(value: torch.Tensor) -> np.ndarray:
    """Draws (K, ...) as (CHAINS, K / CHAINS, ...): consecutive halves, on the CPU."""
    return value.cpu().numpy().reshape(CHAINS, -1, *value.shape[1:])


@torch.no_grad()
def to_inference_data(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    *,
    examples: Sequence[int] = (0, 1, 2, 3),
    num_samples: int = 1000,
    resample: bool = True,
    marginal: LogMarginal | None = None,
    seed: int = 0,
    progress: bool = False,
):
    """An ``arviz.InferenceData`` for rows ``x`` (N, D); see the module docstring.

    Args:
        examples: indices of the E examples whose posterior draws are kept.
        num_samples: K, importance draws per example (for the draws and for log p(x)); even
            and at least 8, as the draws are stored as two chains of K / 2.
        resample: resample draws by their importance weights (True) or keep q's draws. With
            the same ``seed`` both keep the same K guide draws: a resampled draw ``k`` of example
            ``e`` equals the guide draw ``sample_stats["guide_draw"]`` at the same place.
        marginal: a :func:`~pyrovae.log_marginal` result for ``x`` to reuse (else computed).
        seed: seeds the guide draws and the resampling, leaving the caller's streams alone.

    The ESS beside each example's draws is ``sample_stats["importance_ess"]``; the
    ``constant_data`` ``ess`` belongs to the separate pass that estimated ``log_marginal``.

    A site the guide enumerates (the semi-supervised VAE's class y) gives each of its values
    v its own K guide draws z ~ q(z | x, v); the V * K pairs (v, z) are the pool that is
    resampled (``resample=False`` keeps all V * K), ``posterior["y"]`` holds each draw's v and
    ``sample_stats["y_probs_estimate"]`` (example, ``y_value``) the importance estimate of
    p(y = v | x) (not exact: z is sampled).

    Raises:
        ValueError: ``num_samples`` odd or below 8.
    """
    if num_samples < 2 * 4 or num_samples % CHAINS:
        raise ValueError(
            f"num_samples must be even and at least 8 (the draws are stored as {CHAINS} chains "
            f"of num_samples / 2, so that ArviZ validates them), got {num_samples}"
        )
    az = _arviz()
    examples = list(examples)
    if marginal is None:
        marginal = log_marginal(model, guide, x, num_samples=num_samples, progress=progress)
    sites = find_sites(model, guide, (x[:2],))
    chosen = x[examples]
    nesting = plate_nesting(model, guide, (chosen,))
    with torch.random.fork_rng(devices=initialised_cuda_devices()):
        torch.manual_seed(seed)
        log_weights, trace, weighted = weighted_pass(
            model, guide, (chosen,), num_samples, nesting, allow_global=True, particle_plate=True
        )
        by_guide = [n for n in weighted.enumerated if n in trace.nodes]
        guide_probs: dict[str, torch.Tensor] = {}
        if by_guide:  # the joint draws (y, z) of a guide that enumerates y: V * K of them
            log_weights, local, names, nodes, guide_probs = guide_enumerated_pool(
                model, guide, chosen, num_samples, nesting, by_guide, trace
            )
        else:
            log_weights = log_weights.double()  # (E, K)
            local, names, nodes = {}, {}, {}
            for name in weighted.drawn:
                local[name], names[name] = arrange(trace.nodes[name], weighted.plate)
                nodes[name] = trace.nodes[name]
        columns = torch.arange(len(examples), device=log_weights.device)
        if resample:
            index = resample_indices(log_weights, num_samples)  # (K, E), into the pool
            local = {name: v[index, columns] for name, v in local.items()}
            stats = {"guide_draw": index, "log_weight": log_weights.T[index, columns]}
        else:
            stats = {"log_weight": log_weights.T, "weight": torch.softmax(log_weights, -1).T}
        enumerated = [n for n in weighted.enumerated if n not in trace.nodes]
        values, probs = {}, {}
        if enumerated:
            values, probs = enumerated_draws(
                model,
                guide,
                chosen,
                local,
                nodes,
                weighted.plate,
                enumerated,
                nesting,
                num_samples,
                {n: arrange(trace.nodes[n], None)[0] for n in weighted.global_latents},
            )
    posterior, dims, coords = {}, {}, {"example": examples}
    for name, value in local.items():
        posterior[name] = _chains(value)
        dims[name] = ["example", *names[name]]
    for name in weighted.global_latents:  # one draw per particle, shared by the examples
        value, rest = arrange(trace.nodes[name], None)
        posterior[name], dims[name] = _chains(value), rest
    for name in enumerated:
        posterior[name] = _chains(values[name])
        rest = values[name].shape[2:]
        dims[name] = ["example", *[f"{name}_dim_{i}" for i in range(len(rest))]]
        posterior[f"{name}_probs"] = _chains(probs[name])
        dims[f"{name}_probs"] = [*dims[name], f"{name}_value"]
        coords[f"{name}_value"] = np.arange(probs[name].shape[-1])
    idata = az.from_dict(
        posterior=posterior,
        sample_stats={name: _chains(v) for name, v in stats.items()},
        observed_data={sites.observed: x.cpu().numpy()},
        constant_data={
            "log_marginal": marginal.log_likelihood.numpy(),
            "log_likelihood_stderr": marginal.stderr.numpy(),
            "ess": marginal.ess.numpy(),
            "khat": marginal.khat.numpy(),
        },
        coords=coords,
        dims={
            **dims,
            **{name: ["example"] for name in stats},
            **{name: ["all_examples"] for name in ("log_marginal", "log_likelihood_stderr")},
            "ess": ["all_examples"],
            "khat": ["all_examples"],
            sites.observed: ["all_examples"],
        },
        attrs={"num_samples": num_samples, "resampled": int(resample), "proposal": "guide"},
    )
    _, _, ess, khat = weight_statistics(log_weights)  # as log_marginal reports them, (E,)
    idata.sample_stats["importance_ess"] = ("example", ess.cpu().numpy())
    idata.sample_stats["importance_khat"] = ("example", khat.cpu().numpy())
    for name, probs in guide_probs.items():
        idata.sample_stats[f"{name}_probs_estimate"] = (
            ("example", f"{name}_value"),
            probs.cpu().numpy(),
        )
    if guide_probs:
        idata.posterior.attrs["guide_enumerated"] = (
            f"{', '.join(guide_probs)}: enumerated by the guide, so each value v was given its "
            f"own {num_samples} guide draws z ~ q(z | x, v), weighed p(x, v, z) / q(z | x, v); "
            "the pool of (v, z) pairs is what was resampled (guide_draw indexes it, value-major)."
            " sample_stats.{site}_probs_estimate: the importance estimate of p(v | x), not exact"
        )
    pool = log_weights.shape[-1]
    idata.posterior.attrs["draws"] = (
        f"{num_samples} draws resampled from {pool} guide draws by their importance "
        "weights, copies adjacent, stored as 2 chains of consecutive halves; equally weighted, "
        "worth sample_stats.importance_ess independent draws"
        if resample
        else f"{pool} draws of the guide q(z | x) (2 chains of consecutive halves), to "
        "be weighted by sample_stats.weight"
    )
    if weighted.global_latents:
        idata.posterior.attrs["global_latents"] = (
            f"{', '.join(weighted.global_latents)}: the guide's {num_samples} draws "
            "theta_k ~ q(theta), not resampled (the weights are per example); each example's "
            "local draws were weighed given them"
        )
    if enumerated:
        idata.posterior.attrs["enumerated"] = (
            f"{', '.join(enumerated)}: each draw c ~ p(c | x, z) given the same draw's guide "
            "latents z (pyrovae.infer.assign, temperature 1), and {site}_probs the exact "
            "p(c = v | x, z) over the values v of the site's support"
        )
    idata.constant_data.attrs["estimand"] = marginal.estimand
    idata.constant_data.attrs["loo"] = NO_LOO
    return idata


def compare_log_likelihoods(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> dict:
    """Paired comparison of two models' per-example log p(x) (N,): mean difference a - b and
    its standard error sd(a - b) / sqrt(N), in nats per example.

    From two exports of :func:`to_inference_data` on the same examples, pass their
    ``constant_data["log_marginal"]``."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return {
        "mean_difference": float(diff.mean()),
        "stderr": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        "share_a_better": float((diff > 0).mean()),
    }
