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
20% test pieces, and caches the result as ``chorales.npz`` in ``data_dir`` (in the user's
cache directory when no ``data_dir`` is named or it is read-only), so that only the first
call needs music21.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import option
from .splits import DataSplits

#: MIDI pitch of the lowest piano key (A0); the roll has 88 keys, A0..C8.
LOWEST_KEY = 21
KEYS = 88
#: The cache file in ``data_dir``; its ``version`` guards against an older conversion.
CACHE = "chorales.npz"
CACHE_VERSION = 1
#: Shares of pieces in train, validation and test.
SPLIT = (0.6, 0.2, 0.2)
#: The seed of the fixed permutation of the pieces that :data:`SPLIT` cuts.
SPLIT_SEED = 0


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


def cache_candidates(data_dir: str | Path | None) -> list[Path]:
    """Where the converted chorales are looked for, in order: ``data_dir`` (when one is
    named), then the user's cache directory (``$XDG_CACHE_HOME/pyrovae``, default
    ``~/.cache/pyrovae``), which takes the conversion when no ``data_dir`` is named or it
    cannot be written (a read-only data share): never a ``./data`` of the working directory
    (a git checkout's) that nobody named."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    user = Path(base) / "pyrovae" / CACHE
    return [user] if data_dir is None else [Path(data_dir) / CACHE, user]


def _cached(data_dir: str | Path | None) -> Path | None:
    """The first of :func:`~pyrovae.data.sequences.cache_candidates` holding a conversion of this
    version, or None."""
    return next((c for c in cache_candidates(data_dir) if c.exists() and _current(c)), None)


def _current(path: Path) -> bool:
    try:
        with np.load(path) as stored:
            return int(stored["version"]) == CACHE_VERSION
    except (OSError, KeyError, ValueError):
        return False


def load_chorales(data_dir: str | Path | None = None, *, progress: bool = False) -> DataSplits:
    """The Bach chorales of music21's corpus as piano rolls (N, T, 88) with lengths, split by
    piece into train, validation and test (see the module docstring).

    Converted once (about two minutes) and cached as ``chorales.npz`` in ``data_dir``, or in
    the user's cache directory where ``data_dir`` is read-only
    (:func:`~pyrovae.data.sequences.cache_candidates`); later calls read the cache without
    music21."""
    cache = _cached(data_dir)
    if cache is None:
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
        arrays = dict(
            x=x.numpy().astype(np.uint8),
            lengths=lengths.numpy(),
            names=np.array(names),
            version=CACHE_VERSION,
        )
        cache = _write_cache(cache_candidates(data_dir), arrays)
    return split_sequences(cache)


def _write_cache(candidates: list[Path], arrays: dict) -> Path:
    """Write the conversion, atomically, into the first candidate that can be written."""
    failures = []
    for cache in candidates:
        partial = cache.with_suffix(".partial.npz")
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(partial, **arrays)
            partial.replace(cache)
            return cache
        except OSError as e:
            if partial.parent.exists():
                partial.unlink(missing_ok=True)
            failures.append(f"{cache.parent} ({e.strerror or e})")
    raise OSError(
        f"cannot cache the converted chorales in {' or '.join(failures)}; pass a writable "
        f"{option('data_dir')}"
    )


def split_pieces(count: int) -> dict[str, np.ndarray]:
    """The sorted indices of the train, validation and test pieces among ``count``: the
    shares :data:`SPLIT` of a permutation fixed by :data:`~pyrovae.data.sequences.SPLIT_SEED`."""
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    n_train, n_valid = round(SPLIT[0] * count), round(SPLIT[1] * count)
    return {
        "train": np.sort(order[:n_train]),
        "valid": np.sort(order[n_train : n_train + n_valid]),
        "test": np.sort(order[n_train + n_valid :]),
    }


def split_sequences(path: Path) -> DataSplits:
    """The cached rolls split by piece with the fixed permutation of
    :data:`~pyrovae.data.sequences.SPLIT_SEED`:
    :data:`SPLIT` of the pieces in train, validation and test, each split padded to its own
    longest piece."""
    with np.load(path) as stored:
        x = torch.from_numpy(stored["x"].astype(np.float32))
        lengths = torch.from_numpy(stored["lengths"]).long()
        count = len(stored["names"])
    parts = split_pieces(count)

    def take(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(parts[part])
        longest = int(lengths[index].max())
        return x[index, :longest].contiguous(), lengths[index]

    (train_x, train_l), (valid_x, valid_l), (test_x, test_l) = map(take, parts)
    return DataSplits(
        "chorales",
        train_x,
        test_x,
        None,
        None,
        None,
        valid_x,
        train_lengths=train_l,
        test_lengths=test_l,
        valid_lengths=valid_l,
    )


def chorale_names(data_dir: str | Path) -> dict[str, tuple[str, ...]]:
    """The corpus file of every chorale, per split (``"train"``, ``"valid"``, ``"test"``), in
    the order :func:`load_chorales` returns them (after a first conversion)."""
    cache = _cached(data_dir)
    if cache is None:
        raise FileNotFoundError(f"no converted chorales in {data_dir}: call load_chorales first")
    with np.load(cache) as stored:
        names = [str(n) for n in stored["names"]]
    return {
        part: tuple(names[i] for i in index) for part, index in split_pieces(len(names)).items()
    }
