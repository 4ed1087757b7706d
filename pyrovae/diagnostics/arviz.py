"""ArviZ InferenceData from importance sampling: posterior draws, per-example log p(x).

For chosen examples, K draws z_k ~ q(z | x) and their log weights
log w_k = log p(x, z_k) - log q(z_k | x) are kept. By default the draws are resampled
in proportion to w_k (sampling importance resampling), so ``posterior`` approximates
p(z | x) itself rather than q; ``resample=False`` keeps the guide's draws. Groups:

- ``posterior``: each latent site, dims (chain=1, draw, example, *event).
- ``sample_stats``: ``log_weight`` of the raw guide draws, dims (chain=1, draw, example).
- ``log_likelihood``: the observed site's importance-sampled log p(x) for every example,
  dims (chain=1, draw=1, example) -- one estimate per example, for paired comparison of
  two models (:func:`compare_log_likelihoods`), not for LOO.
- ``constant_data``: per-example ``log_likelihood_stderr``, ``ess`` and ``khat``.
- ``observed_data``: the examples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..infer.importance import LogMarginal, importance_pass, log_marginal
from .views import find_sites


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
        import arviz

    return arviz


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
        examples: indices of the examples whose posterior draws are kept.
        num_samples: K, importance draws per example (for the draws and for log p(x)).
        resample: resample draws by their importance weights (True) or keep q's draws.
        marginal: a :func:`~pyrovae.log_marginal` result for ``x`` to reuse (else computed).
    """
    az = _arviz()
    examples = list(examples)
    if marginal is None:
        marginal = log_marginal(model, guide, x, num_samples=num_samples, progress=progress)
    sites = find_sites(model, guide, (x[:2],))
    chosen = x[examples]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        log_weights, trace = importance_pass(model, guide, (chosen,), num_samples)
        latents = {
            name: site["value"]  # (K, E, *event)
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        if resample:
            probs = torch.softmax(log_weights.double(), -1)  # (E, K)
            index = torch.multinomial(probs, num_samples, replacement=True).T  # (K, E)
            latents = {
                name: torch.stack([v[index[:, e], e] for e in range(len(examples))], dim=1)
                for name, v in latents.items()
            }
    posterior = {name: v.cpu().numpy()[None] for name, v in latents.items()}
    dims = {
        name: ["example", *[f"{name}_dim_{i}" for i in range(v.ndim - 3)]]
        for name, v in posterior.items()
    }
    idata = az.from_dict(
        posterior=posterior,
        sample_stats={"log_weight": log_weights.T.cpu().numpy()[None]},
        log_likelihood={sites.observed: marginal.log_likelihood.numpy()[None, None]},
        observed_data={sites.observed: x.cpu().numpy()},
        constant_data={
            "log_likelihood_stderr": marginal.stderr.numpy(),
            "ess": marginal.ess.numpy(),
            "khat": marginal.khat.numpy(),
        },
        coords={"example": examples},
        dims={
            **dims,
            "log_weight": ["example"],
            "log_likelihood_stderr": ["all_examples"],
            "ess": ["all_examples"],
            "khat": ["all_examples"],
            sites.observed: ["all_examples"],
        },
        attrs={"num_samples": num_samples, "resampled": int(resample), "proposal": "guide"},
    )
    return idata


def compare_log_likelihoods(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> dict:
    """Paired comparison of two models' per-example log p(x) (N,): mean difference a - b and
    its standard error sd(a - b) / sqrt(N), in nats per example."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return {
        "mean_difference": float(diff.mean()),
        "stderr": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        "share_a_better": float((diff > 0).mean()),
    }
