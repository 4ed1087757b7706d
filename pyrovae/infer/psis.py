"""Pareto-smoothed importance sampling diagnostics, through ArviZ.

The Pareto k-hat of importance weights w_k = p(x, z_k) / q(z_k | x) estimates the
shape of a generalized Pareto distribution fitted to the largest weights (Vehtari,
Simpson, Gelman, Yao & Gabry, "Pareto smoothed importance sampling", JMLR 2024;
Yao et al. 2018 for its use as a variational diagnostic). k-hat < 0.5: the weights
have finite variance; 0.5 to 0.7: usable; above 0.7: the estimate is unreliable.

Sign convention: ArviZ 0.x's ``psislw`` takes log *weights* (for PSIS-LOO it is
called with ``-log_likelihood``); the ArviZ 1.x packages take the log *ratios* with
the opposite sign. This is the one place pyrovae calls PSIS, and a test pins the
convention on weights with a known tail.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _psislw():
    with warnings.catch_warnings():
        # ArviZ 0.x announces its 1.0 refactor with a FutureWarning on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz.psislw


def pareto_khat(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto k-hat of each row's importance weights: log weights (N, K) -> k-hat (N,).

    Rows with fewer than 5 weights get NaN (too few to fit a tail).
    """
    lw = log_weights.detach().cpu().double().numpy()
    if lw.shape[-1] < 5:
        return torch.full(lw.shape[:-1], float("nan"), dtype=torch.float64)
    with warnings.catch_warnings():
        # ArviZ warns per call when k-hat is large or the tail is short; our callers
        # report k-hat themselves.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        _, khat = _psislw()(lw, reff=1.0)
    return torch.as_tensor(np.asarray(khat, dtype=np.float64))
