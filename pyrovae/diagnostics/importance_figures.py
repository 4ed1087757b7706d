"""Figures of importance-sampling diagnostics: k-hat per example, the worst example's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import _save, subplots


def save_khat_plot(khat: np.ndarray, path: str | Path, *, title: str | None = None) -> Path:
    """Pareto k-hat of each example's importance weights (N,), with the 0.5 and 0.7 lines."""
    khat = np.asarray(khat, dtype=np.float64)
    fig, ax = subplots(figsize=(6, 3.4))
    bad = khat > 0.7
    ax.scatter(np.flatnonzero(~bad), khat[~bad], s=4, color="tab:blue", label="k-hat <= 0.7")
    ax.scatter(np.flatnonzero(bad), khat[bad], s=6, color="tab:red", label="k-hat > 0.7")
    for level, style in ((0.5, ":"), (0.7, "--")):
        ax.axhline(level, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("test example")
    ax.set_ylabel("Pareto k-hat")
    share = 100 * bad.mean() if len(khat) else 0.0
    ax.set_title(title or f"Importance weights' tail: {share:.1f}% of examples above 0.7")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return _save(fig, path)


def save_weights_plot(
    log_weights: np.ndarray,
    path: str | Path,
    *,
    example: int | None = None,
    khat: float | None = None,
) -> Path:
    """One example's normalised importance weights (K,), sorted, on a log scale."""
    lw = np.asarray(log_weights, dtype=np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    ess = 1.0 / np.sum(w**2)
    fig, (left, right) = subplots(1, 2, figsize=(8, 3.2))
    left.plot(np.sort(w)[::-1], marker=".", linestyle="none", markersize=2)
    left.set_yscale("log")
    left.set_xlabel("rank")
    left.set_ylabel("normalised weight")
    right.hist(lw - lw.max(), bins=50, color="tab:grey")
    right.set_xlabel("log w - max log w")
    right.set_ylabel("draws")
    which = f"example {example}" if example is not None else "one example"
    tail = f", k-hat {khat:.2f}" if khat is not None else ""
    fig.suptitle(f"Importance weights of {which}: ESS {ess:.1f} of {len(w)}{tail}")
    fig.tight_layout()
    return _save(fig, path)
