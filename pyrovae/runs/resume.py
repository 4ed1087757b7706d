"""What ``pyrovae train --resume`` reads, and what it refuses before anything is built: the
saved config (with this call's device and epochs), the last checkpoint, and a run that is done,
was trained by another factory or by another number of torch.distributed ranks."""

from __future__ import annotations

from pathlib import Path

from ..infer.distributed import world
from .config import TrainConfig
from .record import CHECKPOINT, RunError, load_checkpoint
from .registry import RECIPES, recipe_for
from .reopen import check_agreement, check_device, checked_config


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
