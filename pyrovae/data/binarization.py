"""Binary data from intensities in [0, 1]: each entry a Bernoulli draw, dynamically (a
fresh draw per batch, from the batcher's generator) or once with a fixed seed (a test set)."""

from __future__ import annotations

import torch

from .splits import DataError

__all__ = ["binarize", "binarize_fixed"]


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample every entry as Bernoulli(x): probabilities of any shape -> float32 0/1, same shape."""
    probs = torch.as_tensor(x).to(torch.float32)
    outside = int((~((probs >= 0) & (probs <= 1))).sum())
    if outside:
        raise DataError(
            f"binarize: {outside} value(s) outside [0, 1] (min {probs.min():g}, max "
            f"{probs.max():g}); scale the data to [0, 1] first, e.g. divide pixels by 255"
        )
    return torch.bernoulli(probs, generator=generator)


def binarize_fixed(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """:func:`binarize` with its own generator seeded by ``seed``: the same x gives the same 0/1."""
    x = torch.as_tensor(x)
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))
