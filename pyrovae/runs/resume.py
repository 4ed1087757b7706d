"""What ``pyrovae train --resume`` reads, and what it refuses before anything is built: the
saved config (with this call's device and epochs), the last checkpoint, and a run that is done,
was trained by another factory or by another number of torch.distributed ranks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from ..infer.distributed import world
from .config import TrainConfig, common_fields, flag_of
from .data import absolute_paths
from .record import CHECKPOINT, CONFIG, RunError, load_checkpoint
from .registry import RECIPES, recipe_for
from .reopen import PER_CALL, check_agreement, check_device, checked_config


def resumed(config: TrainConfig, out: Path) -> tuple[TrainConfig, dict]:
    """The saved config (with this call's device, and its epochs unless None) and the last
    checkpoint."""
    if not (out / CHECKPOINT).exists():
        raise RunError(f"--resume: {out} holds no checkpoint to continue; train without --resume")
    saved = checked_config(out)  # a hand-edited "latent_dim": "ten" is named, not built
    if saved.model not in RECIPES and saved.model != config.model:
        # Resuming imports and calls the run's factory: only the one the user named as MODEL.
        raise RunError(
            f"{out} was trained with the factory {saved.model}, not {config.model}; resume it "
            f"with pyrovae train {saved.model} --out {out} --resume if you trust that code"
        )
    if saved.model != config.model:  # a built-in run under another MODEL
        raise RunError(
            f"{out} holds a {saved.model} run, not {config.model}; resume it with pyrovae train "
            f"{saved.model} --out {out} --resume"
        )
    epochs = saved.epochs if config.epochs is None else config.epochs
    saved = saved.replace(epochs=epochs, device=config.device, out=str(out))
    refusal = recipe_for(saved.model).refuse_resume(saved)
    if refusal:
        raise RunError(refusal)
    check_device(saved.device)  # before reading: a good checkpoint is not "damaged"
    state = load_checkpoint(out / CHECKPOINT, map_location=saved.device)
    check_agreement(out, saved, state)
    check_ranks(out, saved, state)
    if state["epoch"] >= saved.epochs:
        raise RunError(
            f"{out} has already trained {state['epoch']} epochs; to train longer pass "
            f"--epochs N with N > {state['epoch']}"
        )
    return saved, state


def check_given(config: TrainConfig, out: Path, given: Iterable[str]) -> None:
    """Refuse a resume that names a setting with a value other than the run's own.

    ``--resume`` continues a run with its saved settings (only ``--epochs`` and ``--device``
    apply), so ``--lr 1e-4 --resume`` would otherwise be dropped without a word and the run
    continue at its own rate. ``given`` are the settings the command line named; naming the
    run's own value (the first command repeated with ``--resume``) is accepted. A missing
    run, or one of another MODEL, is left to :func:`resumed` to name."""
    if not (out / CONFIG).exists():
        return
    run = checked_config(out)
    if run.model != config.model:
        return
    # --data-dir and a data file as the run saved them: absolute (a relative path is the same)
    saved, ours = run.to_dict(), absolute_paths(config).to_dict()
    named = set(given) - set(PER_CALL)
    fields = [*common_fields(), *dataclasses.fields(recipe_for(config.model).options)]
    changed = [
        f"{flag_of(f)} {_shown(ours[f.name])} (the run's: {_shown(saved[f.name])})"
        for f in fields
        if f.name in named and f.name in saved and ours.get(f.name) != saved[f.name]
    ]
    if changed:
        raise RunError(
            f"--resume continues {out} with its own settings, and this command changes "
            f"{'; '.join(changed)}; drop {'it' if len(changed) == 1 else 'them'} to continue "
            "the run as it was, or train a new run under another --out"
        )


def _shown(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def check_ranks(out: Path, config: TrainConfig, state: dict) -> None:
    """Refuse to resume an SVI checkpoint written by N torch.distributed ranks with M != N:
    each rank takes ``batch_size`` rows of every global batch, so the global batch (and the
    ranks' noise streams) would change in the middle of the run."""
    if not isinstance(state.get("rng"), dict):
        return  # a recipe's own algorithm (EM): no batches
    saved = len(state["rng"].get("ranks") or [None])
    ranks = world()[1]
    if saved == ranks:
        return
    how = "a single process" if saved == 1 else f"torchrun --nproc_per_node {saved}"
    raise RunError(
        f"{out} was trained by {saved} process(es) and this is {ranks}: each takes "
        f"--batch-size {config.batch_size} rows of a global batch, which would change from "
        f"{saved * config.batch_size} to {ranks * config.batch_size} rows mid-run; resume "
        f"it with {how}"
    )
