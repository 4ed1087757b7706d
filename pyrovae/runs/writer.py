"""Writing a run's record while it trains: :class:`RunWriter`, the checkpoint, ``config.json``
and ``metrics.json`` of every epoch, each atomically, and the first of them staged so that a
new run appears whole or not at all, and a replaced run stays whole until its replacement is.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..data import DataSplits
from .config import TrainConfig
from .data import save_splits
from .lock import RunLock
from .record import (
    CHECKPOINT,
    CONFIG,
    DATA_COPY,
    METRICS,
    RunError,
    finite_json,
    save_checkpoint,
    write_json,
)

#: A new run's first checkpoint and config, staged under these names in its directory.
STAGED_CHECKPOINT = ".checkpoint.pt.staged"
STAGED_CONFIG = ".config.json.staged"


class RunWriter:
    """Writes a run's checkpoint, config.json and metrics.json, each atomically.

    The first write of a new run stages the checkpoint and config.json under temporary names
    before it touches anything; then a copy of data no dataset name reloads is written and
    the staged files renamed into place. A full disk or an interrupt before that leaves
    nothing behind. A run that replaces another (``replace``: the lock of the directory,
    ``--overwrite``) is written whole, checkpoint, config, metrics and data copy, into a
    staging directory beside the old run, which is put in the old one's place in one rename
    (:meth:`~pyrovae.runs.lock.RunLock.swap`): whatever fails before (a full disk, a kill),
    the old run stays as it was. With ``writes`` False (a torch.distributed rank other than
    0) it writes nothing.
    """

    def __init__(
        self,
        out: Path,
        *,
        first: bool,
        replace: RunLock | None = None,
        data_copy: DataSplits | None = None,
        writes: bool = True,
    ) -> None:
        self.out, self.replace, self.data_copy = out, replace, data_copy
        self.started, self.writes = not first, writes

    def save(self, checkpoint: dict, config: TrainConfig, metrics: dict) -> None:
        if not self.writes:
            self.started = True
            return
        try:
            if not self.started:
                self._first(checkpoint, config, finite_json(metrics))
                return
            save_checkpoint(self.out / CHECKPOINT, checkpoint)
            write_json(self.out / CONFIG, config.to_dict())
            write_json(self.out / METRICS, finite_json(metrics))
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            if not self.started:
                old = ", and the run it was to replace is as it was" if self.replace else ""
                raise RunError(
                    f"no space left on the device holding {self.out}; the new run was not "
                    f"kept{old}: free some space and train again"
                ) from e
            raise RunError(
                f"no space left on the device holding {self.out}; the last complete "
                "checkpoint is intact: free some space and continue with --resume"
            ) from e

    def _first(self, checkpoint: dict, config: TrainConfig, metrics: dict) -> None:
        if self.replace is not None:
            try:
                staging = self.replace.stage()
                self._write(staging, checkpoint, config, metrics)
                self.replace.swap()
            except BaseException:
                self.replace.discard()
                raise
            self.started = True
            return
        staged_checkpoint = save_checkpoint(self.out / STAGED_CHECKPOINT, checkpoint)
        staged_config = write_json(self.out / STAGED_CONFIG, config.to_dict())
        if self.data_copy is not None:
            save_splits(self.out / DATA_COPY, self.data_copy)
        os.replace(staged_checkpoint, self.out / CHECKPOINT)
        os.replace(staged_config, self.out / CONFIG)
        self.started = True
        write_json(self.out / METRICS, metrics)

    def _write(self, directory: Path, checkpoint: dict, config: TrainConfig, metrics: dict):
        """Every file of the new run into ``directory``."""
        save_checkpoint(directory / CHECKPOINT, checkpoint)
        write_json(directory / CONFIG, config.to_dict())
        write_json(directory / METRICS, metrics)
        if self.data_copy is not None:
            save_splits(directory / DATA_COPY, self.data_copy)
