"""Checks of a figure's content: a readable PNG of a plausible size that is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread


def assert_png(
    path: Path, *, min_height: int = 100, min_width: int = 100, grid: tuple[int, int] | None = None
) -> np.ndarray:
    """The PNG at ``path`` as an (H, W, C) array in [0, 1], after checking that it has at least
    that height and width, an RGB(A) layout, and drawn content (more than one grey level,
    with some pixels far from the background). With ``grid`` (rows, columns) of images, the
    picture must be at least that many pixels per cell."""
    image = imread(path)
    assert image.ndim == 3 and image.shape[-1] in (3, 4), f"{path.name}: not an RGB(A) image"
    height, width = image.shape[:2]
    assert height >= min_height and width >= min_width, f"{path.name}: {height}x{width}"
    if grid is not None:
        assert height >= 8 * grid[0] and width >= 8 * grid[1], f"{path.name}: too small a grid"
    assert 0.0 <= image.min() and image.max() <= 1.0
    rgb = image[..., :3]
    background = np.median(rgb.reshape(-1, 3), axis=0)
    drawn = np.abs(rgb - background).max(-1) > 0.25
    assert drawn.mean() > 0.002, f"{path.name}: (nearly) blank"
    assert len(np.unique(rgb.round(2).reshape(-1, 3), axis=0)) > 2, f"{path.name}: flat"
    return image
