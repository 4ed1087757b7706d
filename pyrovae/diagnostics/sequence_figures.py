"""Figures of sequence models from arrays: piano rolls and the ELBO's terms over training.

A roll is (T, D): T steps (quarter notes) of D values (88 piano keys), 0/1 data or
probabilities in [0, 1]; it is drawn with time to the right and the keys upwards (the
lowest, A0, at the bottom, the Cs named when D is 88), dark where a key sounds, as a
musician reads a piano roll; only the keys that sound somewhere in the figure are drawn.
Every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from .figures import _save, subplots

#: MIDI pitch of the first key of an 88-key roll, for the axis labels (A0).
LOWEST_KEY = 21
PIANO_KEYS = 88


def _key_label(key: int, lowest: int) -> str:
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    pitch = lowest + key
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def _draw_roll(ax: Axes, roll: np.ndarray, title: str, keys: tuple[int, int], lowest: int) -> None:
    roll = np.clip(np.asarray(roll, dtype=np.float32), 0.0, 1.0)
    low, high = keys
    ax.imshow(
        roll[:, low:high].T,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
        extent=(0, roll.shape[0], low - 0.5, high - 0.5),
    )
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    if roll.shape[-1] == PIANO_KEYS:  # a piano roll: the Cs named
        ticks = [k for k in range(low, high) if (lowest + k) % 12 == 0]
        ax.set_yticks(ticks, [_key_label(k, lowest) for k in ticks])


def sounding_range(rolls: Sequence[np.ndarray], margin: int = 2) -> tuple[int, int]:
    """The keys [low, high) that sound (value above 0.05) anywhere in ``rolls``, widened by
    ``margin``: the part of the keyboard worth drawing."""
    dims = rolls[0].shape[-1]
    on = np.zeros(dims, dtype=bool)
    for roll in rolls:
        if len(roll):
            on |= (np.asarray(roll) > 0.05).any(0)
    if not on.any():
        return 0, dims
    keys = np.flatnonzero(on)
    return max(int(keys[0]) - margin, 0), min(int(keys[-1]) + 1 + margin, dims)


def save_piano_rolls(
    rolls: Sequence[Sequence[np.ndarray]],
    path: str | Path,
    *,
    titles: Sequence[Sequence[str]],
    suptitle: str,
    lowest: int = LOWEST_KEY,
) -> Path:
    """A grid of piano rolls: ``rolls[i][j]`` (T, D) in row i, column j, with its title."""
    nrows, ncols = len(rolls), max(len(r) for r in rolls)
    keys = sounding_range([roll for row in rolls for roll in row])
    fig, axes = subplots(nrows, ncols, figsize=(3.2 * ncols, 1.9 * nrows + 0.5), squeeze=False)
    for i, row in enumerate(rolls):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(row):
                ax.set_axis_off()
                continue
            _draw_roll(ax, row[j], titles[i][j], keys, lowest)
            if i == nrows - 1:
                ax.set_xlabel("quarter note", fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def save_terms_curves(history: Sequence[dict], path: str | Path) -> Path:
    """The test ELBO's two terms per sequence against the epoch: KL(q(z | x) || p(z)) and
    E_q[log p(x | z)] (and the KL weight of a warm-up, when there was one)."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = subplots(1, 2, figsize=(9, 3.4))
    marker = "." if len(epochs) < 30 else None
    left.plot(epochs, [r.get("test_kl") for r in history], marker=marker, label="KL")
    left.set_ylabel("KL(q(z | x) || p(z)), nats per sequence")
    left.set_ylim(bottom=0)
    if any("kl_weight" in r for r in history):
        weight = left.twinx()
        weight.plot(epochs, [r.get("kl_weight", 1.0) for r in history], color="grey", ls="--", lw=1)
        weight.set_ylabel("KL weight (warm-up)", color="grey")
        weight.set_ylim(0, 1.05)
    right.plot(epochs, [r.get("test_reconstruction") for r in history], marker=marker)
    right.set_ylabel("E_q[log p(x | z)], nats per sequence")
    for ax, title in ((left, "KL term"), (right, "reconstruction term")):
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}, test sequences", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["save_piano_rolls", "save_terms_curves", "sounding_range"]
