"""A run directory on disk: its files, the :class:`Run` rebuilt from them, and safe I/O.

A run directory holds::

    config.json      the settings, including those resolved from the data
    checkpoint.pt    model, guide and optimizer state, epoch, RNG states, history
    metrics.json     per-epoch numbers (nats per example, higher is better) and their units
    eval.json        what ``pyrovae evaluate`` estimated
    figures/*.png    what ``pyrovae plot`` draws
    ...              files a recipe adds (:attr:`~pyrovae.runs.recipe.Recipe.files`)

Every file is written atomically (:func:`pyrovae.atomic.atomic_write`: a temporary name in the
same directory renamed over the target), so an interrupt never leaves a half-written
checkpoint or JSON file. Checkpoints are read with ``torch.load(..., weights_only=True)``:
tensors, numbers, strings, lists and dicts only, never arbitrary pickled objects.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..data import DataSplits
from .config import TrainConfig
from .inputs import Inputs, to_device

CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# Windows has neither: there a FIFO cannot be made with a run's file name.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

#: The largest JSON file of a run that is read (bytes): a config or metrics of any real run
#: is far smaller.
JSON_LIMIT = 64 * 1024**2


class NotRegularFile(OSError):
    """A path that :func:`open_unlinked` will not open: ``what`` it is instead (a symbolic
    link, a directory, a FIFO or device)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path} is {what}")
        self.what = what


def open_unlinked(path: str | Path, flags: int, mode: int = 0o644) -> tuple[int, os.stat_result]:
    """``os.open(path, flags)`` of a regular file only, and its ``fstat``: a symbolic link at
    the last component is not followed (O_NOFOLLOW) and a FIFO is not waited on (O_NONBLOCK,
    blocking again once the file is known to be regular). Refused: :class:`NotRegularFile`;
    any other failure is ``os.open``'s OSError."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotRegularFile(Path(path), "a symbolic link") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO or device"
        raise NotRegularFile(Path(path), kind)
    if _NONBLOCK:
        os.set_blocking(fd, True)
    return fd, info


def open_regular(path: str | Path, limit: int | None = None):
    """A run's file opened for reading (binary), only when it is a regular file (not a symbolic
    link, FIFO, device or directory) of at most ``limit`` bytes: a received run cannot make a
    reader hang on a FIFO, read ``/dev/zero`` without end or follow a link out of the run.
    Anything else is a :class:`CheckpointError` naming the file, in one line."""
    path = Path(path)
    damaged = "the run directory is damaged (restore the file)"
    try:
        fd, info = open_unlinked(path, os.O_RDONLY)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except NotRegularFile as e:
        if e.what == "a symbolic link":
            raise CheckpointError(
                f"{path} is a symbolic link, not a regular file; a run's files are read only "
                "as regular files inside it: replace the link by the file it points to"
            ) from None
        raise CheckpointError(f"{path} is {e.what}, not a regular file; {damaged}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path} ({e.strerror or e})") from None
    if limit is not None and info.st_size > limit:
        os.close(fd)
        raise CheckpointError(
            f"{path} holds {info.st_size} bytes, more than the {limit} a run's file of its "
            f"kind may; {damaged}"
        )
    return os.fdopen(fd, "rb")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open_regular(path, JSON_LIMIT) as f:
            return json.loads(f.read().decode())
    except UnicodeDecodeError as e:
        raise CheckpointError(
            f"{path} is not UTF-8 text ({e}); the run directory is damaged"
        ) from e
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); the run directory is damaged"
        ) from e


#: Free space (bytes) below which a failed write is put down to a full disk.
DISK_FULL_BYTES = 1 << 20


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint (a dict of tensors, numbers, strings, lists, dicts) atomically.

    The payload carries :func:`checksum` of its tensors, which :func:`load_checkpoint`
    verifies. A full disk is raised as ``OSError(ENOSPC)`` (torch reports it as an opaque
    ``RuntimeError`` from its zip writer); the previous checkpoint is left whole."""
    payload = {"format_version": FORMAT_VERSION, **state}
    payload[CHECKSUM] = checksum(payload)
    try:
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except RuntimeError as e:
        if _free_bytes(Path(path).parent) < DISK_FULL_BYTES:
            raise OSError(errno.ENOSPC, f"no space left on the device holding {path}") from e
        raise


def _free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


#: The checkpoint's key holding :func:`checksum` (checkpoints written before it have none).
CHECKSUM = "checksum"


def checksum(state: Any) -> str:
    """SHA-256 of every tensor in ``state`` (dicts and lists walked in order; each tensor's
    key path, dtype, shape and bytes), leaving out the :data:`CHECKSUM` entry itself. It
    names damage (a flipped bit) on load; it is no signature: whoever can write the file can
    write a matching checksum."""
    digest = hashlib.sha256()

    def walk(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().contiguous().reshape(-1)
            raw = data.view(torch.uint8) if data.numel() else data
            digest.update(f"{where}|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(raw.numpy().tobytes() if data.numel() else b"")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not (where == "" and key == CHECKSUM):
                    walk(item, f"{where}/{key!r}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(state, "")
    return f"sha256:{digest.hexdigest()}"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, without unpickling objects, from
    a regular file only (:func:`open_regular`), and verify its checksum: a checkpoint whose
    tensors changed after it was written is refused ("damaged: checksum mismatch"). One
    written before checkpoints had checksums (no ``checksum`` key) is read as it is."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"no checkpoint at {path}; train a run first (pyrovae train)")
    try:
        with open_regular(path) as f:
            state = torch.load(f, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise CheckpointError(
            f"cannot read the checkpoint {path}: {e}. It is damaged or not a pyrovae checkpoint."
        ) from e
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is not a pyrovae checkpoint (format version {FORMAT_VERSION} expected)"
        )
    saved = state.get(CHECKSUM)
    if saved is not None and saved != checksum(state):
        raise CheckpointError(
            f"{path} is damaged: checksum mismatch (its tensors changed after it was written); "
            "restore it from a copy, or retrain"
        )
    check_weights(path, state)
    return state


def check_weights(path: Path, state: dict[str, Any]) -> None:
    """Raise CheckpointError naming the weights of ``state`` (its model, guide and Pyro
    parameters) that are NaN or infinite: pyrovae never saves such weights (training stops
    at the last finite step), so a checkpoint holding them is damaged, whatever its checksum
    says; loaded, it would give NaN for every number."""
    for part in ("model", "guide", "params"):
        tensors = state.get(part)
        if not isinstance(tensors, dict):
            continue
        bad = {
            name: int((~torch.isfinite(t)).sum())
            for name, t in tensors.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not t.isfinite().all()
        }
        if bad:
            first = next(iter(bad))
            raise CheckpointError(
                f"{path} is damaged: its {part} holds NaN or infinite weights ({bad[first]} in "
                f"{first}{f' and {len(bad) - 1} more tensors' if len(bad) > 1 else ''}); "
                "restore it from a copy, or retrain"
            )


#: A checkpoint written before SVI began (``{PHASE: INITIALIZING}``: a recipe's initialisation,
#: such as pretraining, in progress): ``--resume`` continues it; nothing else can read it.
PHASE = "phase"
INITIALIZING = "initializing"
CONFIG = "config.json"
METRICS = "metrics.json"
EVAL = "eval.json"
FIGURES = "figures"
#: Where a run keeps data that no dataset name reloads (what a factory returned: x, labels
#: and the programs' further arguments, split; :func:`~pyrovae.runs.data.save_splits`).
DATA_COPY = "factory_data.npz"


class RunError(RuntimeError):
    """A run directory cannot be used as asked (missing, already trained, damaged)."""


@dataclass
class Run:
    """A run rebuilt from disk (or just trained): the pair, its data and its record.

    ``test_x`` holds the test inputs as the model sees them (binarized once, with a fixed
    seed, where the recipe binarizes): a tensor, or a tuple of the programs' arguments (the
    sequence models' (x, lengths), a factory's (x, *args)); ``notes`` what the recipe
    recorded about the run (e.g. the epoch it selected)."""

    path: Path
    config: TrainConfig
    model: Callable
    guide: Callable
    data: DataSplits
    test_x: Inputs
    history: list[dict] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def test_inputs(self) -> Inputs:
        """The test inputs as the model sees them, on the run's device."""
        return to_device(self.test_x, self.config.device)


def run_files(out: Path, extra: Iterable[str] = ()) -> list[Path]:
    """Every file a run directory may hold: the common ones and ``extra`` (recipes' own)."""
    names = [CHECKPOINT, CONFIG, METRICS, EVAL, DATA_COPY, FIGURES, *extra]
    return [out / name for name in dict.fromkeys(names)]


def finite_json(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
