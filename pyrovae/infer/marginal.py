"""The result of :func:`~pyrovae.infer.log_marginal` (:class:`LogMarginal`: per-example
log p(x) estimates with their standard errors, effective sample sizes and Pareto k-hats), the
statistics of a batch of log weights it is made of (:func:`weight_statistics`), the refusal
of weights that give no estimate (:class:`NonFiniteWeights`), and the merge of the shares
that torch.distributed ranks estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .proposals import EXACT_WHY, KHAT_DISCRETE, STDERR_TIED
from .psis import pareto_khat


@dataclass
class LogMarginal:
    """Per-example results of :func:`~pyrovae.infer.log_marginal`; tensors are (N,) unless
    stated."""

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
            f"the importance weights of {len(rows)} example(s) [{listed_rows(rows)}] are not "
            "finite (NaN or +inf, or p(x, z) = 0 at every draw), so log p(x) has no estimate "
            "there: check those examples for NaN or values outside the likelihood's support, and "
            "the model and guide for densities that overflow"
        )


def listed_rows(rows: list[int]) -> str:
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


def merge_shares(parts: list[LogMarginal], starts: list[int]) -> LogMarginal:
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
