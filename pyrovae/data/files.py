"""Users' own data files: ``.npy``, ``.npz`` and ``.csv``, read without pickles, each
array's header checked against the bytes the file holds and the memory before anything is
loaded (:func:`check_array_file`, :func:`check_fits`).

An ``.npy`` is the examples; an ``.npz`` holds them under one of :data:`X_KEYS` (or as its
only array) with labels under one of :data:`Y_KEYS` and, for sequences, lengths under
:data:`LENGTH_KEYS`; a ``.csv`` is numeric rows with an optional header row, whose column
``label`` or ``y`` holds the labels.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..machine import available_memory
from .arrays import split_arrays, split_sequence_arrays
from .splits import DataError, DataSplits

__all__ = [
    "BOMB_BYTES",
    "BOMB_RATIO",
    "CSV_LABEL_COLUMNS",
    "FILE_EXTENSIONS",
    "LENGTH_KEYS",
    "LOAD_FACTOR",
    "X_KEYS",
    "Y_KEYS",
    "check_array_file",
    "check_fits",
]

#: The file types a user's data may come in.
FILE_EXTENSIONS = (".npy", ".npz", ".csv")
#: The names an ``.npz`` may hold its examples under, looked for in this order.
X_KEYS = ("x", "X", "data", "images")
#: The name an ``.npz`` of sequences holds their lengths (N,) under.
LENGTH_KEYS = ("lengths",)
#: The names an ``.npz`` may hold its labels under, looked for in this order.
Y_KEYS = ("y", "labels", "targets")
#: The header of a ``.csv``'s label column (any case).
CSV_LABEL_COLUMNS = ("label", "y")
#: An array takes this many times its bytes to load: the array, and its float32 copy.
LOAD_FACTOR = 3
#: A compressed member expanding more than this many times is taken for a decompression
#: bomb once it expands to more than :data:`BOMB_BYTES` (real data compress 2 to 50 times).
BOMB_RATIO = 200
#: The expanded size (bytes) past which a member expanding :data:`BOMB_RATIO` times is refused.
BOMB_BYTES = 2**30


def check_fits(path: Path | str, nbytes: int, claim: str) -> None:
    """Raise DataError when ``nbytes`` of data (what ``claim`` says of the file) would not fit
    in the memory this process may still take, :data:`LOAD_FACTOR` times over."""
    have = available_memory()
    if nbytes * LOAD_FACTOR > have:
        raise DataError(
            f"{path}: {claim}, {nbytes / 1e9:.3g} GB, more than fits in the {have / 1e9:.3g} GB "
            "of memory available to load it; use a smaller file, or a machine with more memory"
        )


def _npy_header(f, path: Path | str, size: int) -> None:
    """Read a ``.npy`` header from ``f`` and check its claim against the ``size`` bytes the
    file (or archive member) holds and against the memory: a header claiming (1e6, 1e6) on
    64 bytes of data is refused, not allocated."""
    version = np.lib.format.read_magic(f)
    read = getattr(np.lib.format, f"read_array_header_{version[0]}_{version[1]}", None)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("it holds Python objects")
    nbytes = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if nbytes != held:
        raise DataError(
            f"{path}: its header claims an array {shape} of {dtype} ({nbytes} bytes), but the "
            f"file holds {held}; it is damaged or not what it claims: save it again with "
            "numpy.save / numpy.savez"
        )
    check_fits(path, nbytes, f"its header claims an array {shape} of {dtype}")


def _check_arrays(path: Path) -> None:
    with open(path, "rb") as f:
        check_array_file(f, path)


def check_array_file(f: BinaryIO, path: Path | str) -> None:
    """Check every array's header in the ``.npy`` or ``.npz`` open as ``f`` (binary, seekable)
    before anything is loaded: the size it claims against the bytes it holds and the memory
    (``check_fits``). An ``.npz`` member's size is the archive's (``zipfile`` reads no
    more and checks its CRC), and one that expands ``BOMB_RATIO`` times past
    ``BOMB_BYTES`` is refused as a decompression bomb. Raises DataError, or ValueError /
    ``zipfile.BadZipFile`` for a file numpy could not read either."""
    f.seek(0)
    if not f.read(4).startswith(b"PK\x03\x04"):
        f.seek(0)
        _npy_header(f, path, os.fstat(f.fileno()).st_size)
        return
    f.seek(0)
    with zipfile.ZipFile(f) as archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        check_fits(path, total, f"its arrays expand to {total} bytes")
        for member in members:
            where = f"{path}[{member.filename}]"
            if member.file_size > BOMB_BYTES and member.file_size > BOMB_RATIO * max(
                member.compress_size, 1
            ):
                raise DataError(
                    f"{where}: {member.compress_size} compressed bytes expand to "
                    f"{member.file_size}, a decompression bomb; use the original file"
                )
            if member.filename.endswith(".npy"):
                with archive.open(member) as m:
                    _npy_header(m, where, member.file_size)


def _load_array_file(name: str, path: Path, seed: int, test_fraction: float) -> DataSplits:
    if path.suffix.lower() == ".csv":
        x, y = _read_csv(path)
    else:
        loaded = _np_load(path)
        if isinstance(loaded, dict) and any(k in loaded for k in LENGTH_KEYS):
            raise DataError(
                f"{path}: holds sequences (it has lengths), which this model cannot take: "
                "train a sequence model (pyrovae train seqvae or dmm)"
            )
        x, y = _pick_npz_arrays(loaded, path) if isinstance(loaded, dict) else (loaded, None)
    return split_arrays(x, y, name, seed=seed, test_fraction=test_fraction)


def _load_sequence_file(name: str, path: Path, seed: int, test_fraction: float) -> DataSplits:
    """A user's sequences: ``x`` (N, T, D) with optional ``lengths`` (N,) and labels (N,),
    split into train/test by a permutation seeded with ``seed``."""
    if path.suffix.lower() == ".csv":
        raise DataError(
            f"{path}: a csv holds rows, not sequences; save them with numpy.savez(path, "
            "x=sequences (N, T, D), lengths=steps (N,))"
        )
    loaded = _np_load(path)
    lengths = None
    if isinstance(loaded, dict):
        length_key = next((k for k in LENGTH_KEYS if k in loaded), None)
        lengths = loaded.pop(length_key) if length_key else None
        x, y = _pick_npz_arrays(loaded, path)
    else:
        x, y = loaded, None
    return split_sequence_arrays(x, lengths, y, name, seed=seed, test_fraction=test_fraction)


def _np_load(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """``np.load`` without pickles: an ``.npy`` array, or an ``.npz`` as a dict of arrays."""
    _check_arrays_readable(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path}: cannot read it with numpy ({e}); save numeric arrays with numpy.save / "
            "numpy.savez (object arrays and pickles are not accepted)"
        ) from e


def _check_arrays_readable(path: Path) -> None:
    """:func:`_check_arrays`, its own refusals as they are and any other failure to read the
    headers as the file's problem."""
    try:
        _check_arrays(path)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{path}: cannot read it with numpy ({e}); save numeric arrays with numpy.save / "
            "numpy.savez (object arrays and pickles are not accepted)"
        ) from e


def _pick_npz_arrays(
    arrays: dict[str, np.ndarray], path: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Examples under one of X_KEYS (or the only array), labels under one of Y_KEYS if present."""
    x_key = next((k for k in X_KEYS if k in arrays), None)
    if x_key is None and len(arrays) == 1:
        x_key = next(iter(arrays))
    if x_key is None:
        raise DataError(
            f"{path}: no examples array found; the file has keys {sorted(arrays)}, accepted keys "
            f"are {', '.join(X_KEYS)} (labels: {', '.join(Y_KEYS)}); re-save it as "
            "numpy.savez(path, x=examples, y=labels)"
        )
    y_key = next((k for k in Y_KEYS if k in arrays and k != x_key), None)
    return arrays[x_key], None if y_key is None else arrays[y_key]


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Numeric csv, optional header row; a header column ``label``/``y`` holds the labels."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [
                (reader.line_num, [c.strip() for c in r]) for r in reader if any(map(str.strip, r))
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it as a csv text file ({e})") from e
    header = rows.pop(0)[1] if rows and not all(map(_is_number, rows[0][1])) else None
    if not rows:
        raise DataError(f"{path}: zero examples (no data rows); put one example per row")
    width = len(header) if header is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: line {line} has {len(row)} cells, expected {width}")
    try:
        values = np.array([row for _, row in rows], dtype=np.float64).reshape(len(rows), width)
    except ValueError:
        line, row = next((line, r) for line, r in rows if not all(map(_is_number, r)))
        col = next(i for i, cell in enumerate(row) if not _is_number(cell))
        raise DataError(
            f"{path}: non-numeric cell {row[col]!r} at line {line}, column {col + 1}; every cell "
            "below the optional header must be a number: clean or impute such cells"
        ) from None
    names = [h.lower() for h in header or []]
    label_col = next((i for i, h in enumerate(names) if h in CSV_LABEL_COLUMNS), None)
    if label_col is None:
        return values, None
    return np.delete(values, label_col, axis=1), values[:, label_col]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
