"""Expectation-maximisation for models with a closed-form M-step.

For any distribution q(z) over the latents,

    log p(x; theta) = F(q, theta) + KL(q(z) || p(z | x; theta)),
    F(q, theta) = E_q[log p(x, z; theta)] - E_q[log q(z)] <= log p(x; theta).

The E-step sets q = p(z | x; theta_t), closing the gap (F = log p(x; theta_t)); the M-step
maximises F over theta with q fixed. Hence

    log p(x; theta_{t+1}) >= F(q_t, theta_{t+1}) >= F(q_t, theta_t) = log p(x; theta_t):

the log-likelihood never decreases (Dempster, Laird & Rubin 1977; Neal & Hinton 1998).
A model takes part by implementing ``em_step(x) -> float``: one E- and M-step in place,
returning the mean log p(x_n) per example at the parameters it started from. A model may set
``em_reset = True`` after a step that left the monotone path on purpose (the mixture
re-seeding an empty component): :func:`~pyrovae.infer.em` then records the iteration in
:attr:`EMHistory.resets` and does not read the next change as convergence.

This module is the generic driver only: what a step computes belongs to each model
(:class:`~pyrovae.models.FactorAnalysis`, :class:`~pyrovae.models.GaussianMixture`, whose
statistics, M-step and restarts, ``pyrovae.models.fit_mixture``, live in
:mod:`pyrovae.models`). It imports nothing from :mod:`pyrovae.models`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import TrainingDiverged
from .progress import progress_bar


@dataclass
class EMHistory:
    """The run of :func:`~pyrovae.infer.em`.

    Attributes:
        log_likelihood: mean log p(x_n) (nats per example) at the parameters entering each
            iteration; the model itself ends one update past the last entry.
        converged: whether the improvement fell below ``tol`` before ``max_iter``.
        iterations: the number of ``em_step`` calls.
        resets: the iterations (1-based) after which the model set ``em_reset``.
        restarts: for a driver that restarts EM and keeps the best run
            (``pyrovae.models.fit_mixture``): the final mean log-likelihood of every restart;
            this history is that of the best. Empty after :func:`~pyrovae.infer.em` alone.
    """

    log_likelihood: list[float] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    resets: list[int] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)


def em(
    model: Any,
    x: torch.Tensor,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    progress: bool = True,
    callback: Callable[[EMHistory], None] | None = None,
    desc: str = "em",
) -> EMHistory:
    """Run ``model.em_step(x)`` until the mean log-likelihood improves by less than ``tol``.

    Args:
        model: anything with ``em_step(x) -> float`` (mean log p(x_n) before the update),
            e.g. :class:`~pyrovae.models.FactorAnalysis`.
        x: the data, rows (N, D), passed to ``em_step`` unchanged.
        max_iter: the most iterations to run.
        tol: stop once log-likelihood(t) - log-likelihood(t - 1) < tol, in nats per example.
        progress: show a tqdm bar with the current value.
        callback: called as ``callback(history)`` after every iteration.
        desc: the progress bar's label.

    Returns:
        :class:`EMHistory` with the per-iteration values, whether ``tol`` was reached and the
        number of iterations.

    Raises:
        TypeError: the model has no ``em_step`` method.
        TrainingDiverged: the log-likelihood became NaN or infinite.
    """
    step = getattr(model, "em_step", None)
    if not callable(step):
        raise TypeError(
            f"em() needs a model with a closed-form M-step, a method em_step(x) -> float; "
            f"{type(model).__name__} has none. Fit it by SVI with pyrovae.fit instead."
        )
    history = EMHistory()
    compare = False  # whether the value may be compared with the previous one
    with progress_bar(total=max_iter, disable=not progress, desc=desc, unit="iter") as bar:
        for _ in range(max_iter):
            value = float(step(x))
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"the log-likelihood became {value} at EM iteration {history.iterations + 1};"
                    " check the data for NaN, infinite or constant columns."
                )
            history.log_likelihood.append(value)
            history.iterations += 1
            bar.update(1)
            bar.set_postfix_str(f"log-likelihood {value:.6f}", refresh=False)
            if callback is not None:
                callback(history)
            if compare and value - history.log_likelihood[-2] < tol:
                history.converged = True
                break
            compare = not getattr(model, "em_reset", False)
            if not compare:
                history.resets.append(history.iterations)
    return history


__all__ = ["EMHistory", "em"]
