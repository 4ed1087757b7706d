"""Sequence data (N, T, D) with per-sequence lengths, and the Bach chorales as piano rolls.

A batch of sequences of different lengths is one padded tensor x (N, T, D), T the longest,
with lengths (N,): sequence n's steps T_n..T-1 are padding (zeros), which
:class:`~pyrovae.models.SequenceVAE` and :class:`~pyrovae.models.DeepMarkovModel` mask out.
:func:`pad_sequences` builds it from a list of (T_n, D) arrays.

The chorales: :func:`piano_roll` turns notes (onset and duration in quarter notes, MIDI
pitch) into a binary roll of 88 keys (MIDI 21..108, A0..C8) with one step per quarter note,
a key on at step k when one of its notes sounds at the quarter's onset (onset <= k <
onset + duration), as the JSB Chorales benchmark of Boulanger-Lewandowski et al. (ICML
2012) does. :func:`load_chorales` converts the Bach chorales that the ``music21`` package
ships in its corpus (``pip install music21``, or ``pip install -e ".[music]"``; no
download), splits them by piece with a fixed permutation into 60% train, 20% validation and
20% test pieces, and caches the result as ``chorales.npz`` in ``data_dir``, so that only the
first call needs music21.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: MIDI pitch of the lowest piano key (A0); the roll has 88 keys, A0..C8.
LOWEST_KEY = 21
KEYS = 88
#: The cache file in ``data_dir``; its ``version`` guards against an older conversion.
CACHE = "chorales.npz"
CACHE_VERSION = 1
#: Shares of pieces in train, validation and test, and the seed of the fixed permutation.
SPLIT = (0.6, 0.2, 0.2)
SPLIT_SEED = 0


@dataclass(frozen=True)
class SequenceSplits:
    """Padded sequences (N, T, D) float32 and lengths (N,) int64 per split, and names."""

    name: str
    train_x: torch.Tensor
    train_lengths: torch.Tensor
    valid_x: torch.Tensor
    valid_lengths: torch.Tensor
    test_x: torch.Tensor
    test_lengths: torch.Tensor
    #: The source of every sequence (a piece's corpus path), per split.
    names: dict[str, tuple[str, ...]]

    @property
    def input_dim(self) -> int:
        return int(self.train_x.shape[-1])


def pad_sequences(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (T_n, D) as one tensor (N, max T_n, D) float32, zero-padded, and lengths (N,).

    Raises:
        ValueError: no sequences, an empty one, or different D.
    """
    if not sequences:
        raise ValueError("no sequences to pad")
    dims = {np.asarray(s).shape[1:] for s in sequences}
    if any(np.asarray(s).ndim != 2 for s in sequences) or len(dims) != 1:
        raise ValueError(f"every sequence must be (T_n, D) with one D; got shapes {sorted(dims)}")
    lengths = [len(s) for s in sequences]
    if min(lengths) < 1:
        raise ValueError("every sequence needs at least one step")
    x = np.zeros((len(sequences), max(lengths), *dims.pop()), dtype=np.float32)
    for n, s in enumerate(sequences):
        x[n, : len(s)] = s
    return torch.from_numpy(x), torch.tensor(lengths, dtype=torch.long)


def piano_roll(notes: Iterable[tuple[float, float, int]], steps: int | None = None) -> np.ndarray:
    """Notes (onset, duration, MIDI pitch), in quarter notes, as a binary roll (steps, 88): key
    p - 21 on at step k when some note of pitch p has onset <= k < onset + duration. Notes
    outside the piano's range are refused; ``steps`` defaults to the last note's end."""
    notes = list(notes)
    if steps is None:
        steps = max((math.ceil(o + d) for o, d, _ in notes), default=0)
    roll = np.zeros((steps, KEYS), dtype=np.uint8)
    for onset, duration, pitch in notes:
        key = int(pitch) - LOWEST_KEY
        if not 0 <= key < KEYS:
            raise ValueError(f"MIDI pitch {pitch} is outside the piano's 88 keys (21..108)")
        first, last = math.ceil(onset), math.ceil(onset + duration)  # quarters it sounds at
        roll[first : min(last, steps), key] = 1
    return roll


def _chorale_paths() -> list[str]:
    """The corpus paths of the Bach chorales music21 ships, in a fixed (sorted) order."""
    try:
        from music21 import corpus
    except ImportError as e:
        raise ImportError(
            "the chorales come from the music21 package's corpus: pip install music21 (or "
            'pip install -e ".[music]"); after the first conversion the cached chorales.npz '
            "is read without it"
        ) from e
    paths = [str(p) for p in corpus.getComposer("bach")]
    return sorted(p for p in paths if "choraleAnalyses" not in p)


def _convert(path: str) -> np.ndarray:
    from music21 import converter

    score = converter.parse(path)
    notes = [
        (float(n.offset), float(n.quarterLength), p.midi)
        for n in score.flatten().notes
        for p in n.pitches
    ]
    return piano_roll(notes)


def load_chorales(data_dir: str | Path, *, progress: bool = False) -> SequenceSplits:
    """The Bach chorales of music21's corpus as piano rolls, split by piece (see the module
    docstring); converted once and cached in ``data_dir / chorales.npz``."""
    cache = Path(data_dir) / CACHE
    if not (cache.exists() and int(np.load(cache)["version"]) == CACHE_VERSION):
        paths = _chorale_paths()
        rolls, names = [], []
        for path in paths:
            roll = _convert(path)
            if len(roll):
                rolls.append(roll)
                names.append(Path(path).name)
            if progress:
                print(f"converted {len(rolls)} of {len(paths)} chorales", end="\r", flush=True)
        x, lengths = pad_sequences(rolls)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez_compressed(
            partial,
            x=x.numpy().astype(np.uint8),
            lengths=lengths.numpy(),
            names=np.array(names),
            version=CACHE_VERSION,
        )
        partial.replace(cache)
    return split_sequences(cache)


def split_sequences(path: Path) -> SequenceSplits:
    """The cached rolls split by piece with the fixed permutation of :data:`SPLIT_SEED`."""
    stored = np.load(path)
    x = torch.from_numpy(stored["x"].astype(np.float32))
    lengths = torch.from_numpy(stored["lengths"]).long()
    names = [str(n) for n in stored["names"]]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(names))
    n_train = round(SPLIT[0] * len(names))
    n_valid = round(SPLIT[1] * len(names))
    parts = {
        "train": np.sort(order[:n_train]),
        "valid": np.sort(order[n_train : n_train + n_valid]),
        "test": np.sort(order[n_train + n_valid :]),
    }

    def take(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(parts[part])
        longest = int(lengths[index].max())
        return x[index, :longest], lengths[index]

    (train_x, train_l), (valid_x, valid_l), (test_x, test_l) = map(take, parts)
    return SequenceSplits(
        "chorales",
        train_x,
        train_l,
        valid_x,
        valid_l,
        test_x,
        test_l,
        {part: tuple(names[i] for i in index) for part, index in parts.items()},
    )
