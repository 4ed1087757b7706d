"""How much a command may draw: ``pyrovae sample --n`` is refused above what a grid of images
can be drawn with in :data:`MEMORY_BUDGET` bytes, before any model is run."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .record import RunError

#: The memory a sample grid may take to draw (bytes).
MEMORY_BUDGET = 2 * 1024**3
#: Bytes per image of a grid whatever its size: each is drawn 0.6 inch square at 150 dpi,
#: resampled in float64 RGBA (peak memory measured: 0.36 MB more per image).
RENDERED_BYTES = 360_000
#: Bytes per value of one image: the model's output, the tiled canvas and its copies.
BYTES_PER_VALUE = 64


def max_samples(image_shape: Sequence[int]) -> int:
    """The most images of ``image_shape`` (C, H, W) a grid may hold."""
    per_image = RENDERED_BYTES + BYTES_PER_VALUE * math.prod(image_shape)
    return max(1, MEMORY_BUDGET // per_image)


def check_sample_count(n: int, image_shape: Sequence[int]) -> None:
    """Raise RunError when a grid of ``n`` images of ``image_shape`` would not fit the
    memory budget (``sample --n 100000`` was killed for memory)."""
    limit = max_samples(image_shape)
    if n > limit:
        need = n * (RENDERED_BYTES + BYTES_PER_VALUE * math.prod(image_shape)) / 1e9
        raise RunError(
            f"--n {n}: a grid of {n} images would take about {need:.0f} GB of memory to draw; "
            f"draw at most {limit} per grid (several grids with different --seed for more)"
        )
