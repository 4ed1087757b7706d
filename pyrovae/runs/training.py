"""``pyrovae train``: build a run, train it with a checkpoint every epoch, resume it.

The same steps for every family, asking its :class:`~pyrovae.runs.recipe.Recipe` what differs
and writing every file of the run directory here (:class:`~pyrovae.runs.writer.RunWriter`),
EM included:

1. settings checked; with ``resume`` the saved config (only ``device``, and ``epochs`` where
   given, apply); with ``overwrite`` only a run pyrovae wrote is replaced;
2. the pair built, with the settings resolved from the data (``recipe.build``);
3. a recipe with an algorithm of its own (``recipe.fit``, the mixture's EM) hands each
   result worth keeping to :func:`_save_fitted`; otherwise SVI by :class:`~pyrovae.infer.Trainer`
   on ``recipe.plan``'s data and objective, saving after every epoch;
4. ``recipe.finish`` (e.g. the ssvae's selected epoch), the figures, the closing line.

Under ``torchrun`` (a torch.distributed group of R ranks, joined by the command line:
:mod:`pyrovae.runs.processes`) every rank builds the same pair from the same data and seed
and trains its share of each global batch (:class:`~pyrovae.infer.Trainer`); rank 0 alone
holds the lock, writes the checkpoints, metrics and figures and speaks. The other ranks read
the run only to resume it, from the checkpoint rank 0 wrote. A recipe's own algorithm runs
on every rank too (the mixture's EM all-reduces its statistics: ``fit_mixture``).

The directory is touched only once a first fit, or a first loss evaluation, has succeeded, so
a bad input leaves nothing behind; every file is written atomically.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

from ..infer import Trainer
from ..infer.distributed import world
from .config import TrainConfig
from .data import absolute_paths
from .inputs import as_args
from .lock import LOCK, RunLock
from .recipe import Fitted, Recipe
from .record import (
    CHECKPOINT,
    CONFIG,
    INITIALIZING,
    METRICS,
    PHASE,
    Run,
    RunError,
    run_files,
    write_json,
)
from .registry import every_recipe, recipe_for
from .reopen import check_device, open_data, plot
from .replace import check_replaceable
from .resume import resumed
from .signals import Terminated, terminated_as_exit
from .writer import RunWriter

Log = Callable[[str], None]


def extra_files() -> tuple[str, ...]:
    """Files of any recipe's own: an overwrite removes them whatever the old run was."""
    return tuple(name for recipe in every_recipe() for name in recipe.files)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Log = print,
    factory_path: tuple[str, ...] = (),
) -> Run:
    """Train the run described by ``config`` into ``config.out``; see the module docstring.

    With ``resume`` the saved configuration is used (only ``device``, and ``epochs`` unless it
    is None, are taken from ``config``) and training continues from the last checkpoint,
    reaching the same numbers as an uninterrupted run with the same seed on CPU; a factory
    run's factory is then imported from the installed environment or ``factory_path`` only.

    The directory is locked while training (:class:`~pyrovae.runs.lock.RunLock`: a second
    process into it fails at once). Nothing is written before the first checkpoint (after
    the first SVI epoch, or the first step a recipe's initialisation saves, such as a
    pretraining epoch: then ``resume`` continues the initialisation); a failure
    before it leaves the directory as it was (removed, if this call created it), and
    ``overwrite`` replaces an old run (only a directory pyrovae wrote:
    :func:`~pyrovae.runs.replace.check_replaceable`) only once the new one is complete, with
    its first checkpoint, in a directory beside it that takes its place in one rename.
    SIGTERM unwinds as an interrupt does (:class:`Terminated`).
    """
    out = Path(config.out)
    if world()[0] != 0:  # a rank beside rank 0: trains its share, writes and says nothing
        return _train(config, out, resume, overwrite, False, _silent, factory_path, None)
    if not resume and out.is_dir():
        _replaces(out, overwrite)  # a refusal before the lock leaves not even a lock file
    with terminated_as_exit(), RunLock(out) as lock:
        try:
            return _train(config, out, resume, overwrite, progress, log, factory_path, lock)
        except BaseException:
            if lock.created and not (out / CHECKPOINT).exists():
                _remove_created(out)
            raise


def _replaces(out: Path, overwrite: bool) -> bool:
    """Whether a new run into ``out`` replaces one there; refused without ``overwrite``, or
    when pyrovae did not write the directory."""
    if not any(p.exists() or p.is_symlink() for p in run_files(out, extra_files())):
        return False
    if not overwrite:
        raise RunError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    check_replaceable(out, extra_files())
    return True


def _remove_created(out: Path) -> None:
    """Remove a directory this call created and wrote nothing lasting into (lock, temporaries)."""
    for path in out.iterdir():
        if path.name == LOCK or path.name.endswith((".tmp", ".staged")):
            path.unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:  # something else is in it now: leave it
        pass


def _silent(message: str) -> None:
    """The log of a rank other than 0."""


def _train(config, out, resume, overwrite, progress, log, factory_path, lock) -> Run:
    writes = lock is not None  # rank 0 (or the only process) holds the lock and writes
    state = None
    replace = False
    if resume:
        config, state = resumed(config, out)
    else:
        replace = _replaces(out, overwrite)
    config.validate()
    check_device(config.device)
    if not resume:
        config = absolute_paths(config)
    recipe = recipe_for(config.model)
    pyro.set_rng_seed(config.seed)
    if resume:
        built = recipe.build(config, saved=open_data(out, config), code_path=factory_path)
    else:
        built = recipe.build(config)
    config = built.config
    for message in built.messages:
        log(message)
    writer = RunWriter(
        out,
        first=not resume,
        replace=lock if replace else None,
        data_copy=built.data if built.keep_data and not resume else None,
        writes=writes,
    )
    fitted = recipe.fit(
        config, built.data, save=lambda f: _save_fitted(writer, f), progress=progress, log=log
    )
    if fitted is not None:
        run = Run(
            out,
            fitted.config,
            fitted.model,
            fitted.guide,
            built.data,
            recipe.test_inputs(fitted.config, built.data),
            list(fitted.history),
        )
        return _finish(recipe, run, log, write_metrics=False) if writes else run
    model, guide = built.model, built.guide
    plan = recipe.plan(config, built.data, guide, out)
    for message in plan.messages:
        log(message)
    data = plan.data
    for program in (model, guide):
        if isinstance(program, torch.nn.Module):
            program.to(config.device)
    initial: dict = {}
    if state is None or state.get(PHASE) == INITIALIZING:
        initial = _initialize(
            recipe, config, model, guide, data, writer, state, log=log, progress=progress
        )
        state = None
    test_x = recipe.test_inputs(config, data)

    def save_epoch(trainer: Trainer) -> None:
        # ``config`` as it is when the epoch ends: with the objective the trainer resolved.
        checkpoint = {**trainer.state_dict(), "config": config.to_dict()}
        if recipe.test_elbo_note and "test_elbo" not in trainer.history[-1]:
            raise RuntimeError(
                f"the {recipe.name} recipe says its metrics record test_elbo "
                f"({recipe.test_elbo_note!r}), but none of them did"
            )
        writer.save(checkpoint, config, _metrics(recipe, config, trainer.history))

    trainer = Trainer(
        model,
        guide,
        plan.train_data,
        test_data=None if recipe.test_elbo_note else as_args(test_x),
        batch_size=config.batch_size,
        lr=config.lr,
        objective=config.objective if plan.objective is None else plan.objective,
        num_particles=config.num_particles,
        dreg=config.dreg,
        transform=recipe.transform(config),
        seed=config.seed,
        metrics=plan.metrics,
        callbacks=[save_epoch, *(plan.callbacks if writes else [])],
        progress=progress,
        device=config.device,
        capture=config.capture,
        kl_warmup=plan.kl_warmup,
        lr_decay=config.lr_decay,
        lr_decay_epochs=config.lr_decay_epochs,
    )
    if isinstance(trainer.objective, str):
        config = config.replace(objective=trainer.objective)  # "auto" resolved from the program
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [repr(e)])[0]
            raise RunError(
                f"{out / CHECKPOINT} does not fit the pair that {out / CONFIG} describes "
                f"({first}); the run directory is mixed or damaged: restore both files"
            ) from None
        log(f"resuming {out} at epoch {trainer.epoch + 1} of {config.epochs}")
    elif plan.record_start:
        start: dict = {"epoch": 0, **initial}
        for metric in plan.metrics:
            start.update(metric(trainer))
        trainer.history.append(start)
    try:
        trainer.run(config.epochs)
    except (KeyboardInterrupt, Terminated):
        if writer.started:
            log(
                f"\ninterrupted; {out / CHECKPOINT} holds epoch {trainer.epoch}. Continue with "
                f"pyrovae train {config.model} --out {out} --epochs {config.epochs} --resume"
            )
        elif writer.replace is not None:
            log(
                f"\ninterrupted before the first epoch ended; nothing new was saved, and the "
                f"run in {out} is as it was"
            )
        else:
            log(f"\ninterrupted before the first epoch ended; nothing was saved in {out}")
        raise
    run = Run(out, config, model, guide, data, test_x, list(trainer.history))
    if not writes:
        return run
    return _finish(recipe, run, log, write_metrics=True)


def _initialize(recipe, config, model, guide, data, writer, state, *, log, progress) -> dict:
    """``recipe.initialize`` (pretraining, say) with a checkpoint of its progress: each state
    it hands over is saved as the run's checkpoint, marked ``phase: initializing`` (SVI has
    not begun, metrics.json's history is empty), so an interrupted initialisation continues
    with ``--resume`` from the last state instead of starting again; ``state`` is such a
    checkpoint on resume. Returns the numbers the recipe reports for the history's epoch 0."""

    def save(progress_state: dict) -> None:
        checkpoint = {
            PHASE: INITIALIZING,
            "initialization": progress_state,
            "epoch": 0,
            "history": [],
            "config": config.to_dict(),
        }
        writer.save(checkpoint, config, _metrics(recipe, config, []))

    resumed = None if state is None else state["initialization"]
    if resumed is not None:
        log(f"resuming the initialisation of {config.out}")
    try:
        return (
            recipe.initialize(
                config, model, guide, data, log=log, progress=progress, save=save, state=resumed
            )
            or {}
        )
    except (KeyboardInterrupt, Terminated):
        if writer.started:
            log(
                f"\ninterrupted while initialising; {Path(config.out) / CHECKPOINT} holds the "
                f"progress so far. Continue with pyrovae train {config.model} --out "
                f"{config.out} --epochs {config.epochs} --resume"
            )
        raise


def _save_fitted(writer: RunWriter, fitted: Fitted) -> None:
    """A recipe's own fit so far (the mixture saves its best model after every K of a sweep)."""
    state = {
        "model": {k: v.detach().cpu() for k, v in _state_dict(fitted.model).items()},
        "guide": {k: v.detach().cpu() for k, v in _state_dict(fitted.guide).items()},
        "epoch": fitted.epoch,
        "history": fitted.history,
        "config": fitted.config.to_dict(),
    }
    writer.save(state, fitted.config, fitted.metrics)


def _state_dict(program: Callable) -> dict:
    return program.state_dict() if isinstance(program, torch.nn.Module) else {}


def _finish(recipe: Recipe, run: Run, log: Log, *, write_metrics: bool) -> Run:
    finished = recipe.finish(run)
    run.notes.update(finished.notes)
    if write_metrics and finished.metrics:
        metrics = _metrics(recipe, run.config, run.history)
        write_json(run.path / METRICS, {**metrics, **finished.metrics})
    for message in finished.messages:
        log(message)
    if run.config.figures:
        try:
            paths = plot(run)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise RunError(
                f"no space left on the device for the figures of {run.path}; the run itself is "
                f"saved: free some space and write them with pyrovae plot {run.path}"
            ) from e
        log(f"figures: {', '.join(p.name for p in paths)} in {run.path / 'figures'}")
    log(recipe.closing(run))
    return run


def _metrics(recipe: Recipe, config: TrainConfig, history: list[dict]) -> dict:
    """metrics.json of an SVI run: what its numbers are, the objective and the history."""
    test_elbo = recipe.test_elbo_note or "test_elbo is a one-sample estimate of the ELBO"
    note = f"nats per example, higher is better; {test_elbo}"
    if config.objective == "iwae":
        note += f"; train_elbo is the IWAE bound with K = {config.num_particles}"
    clause = recipe.units(config)
    if clause:
        note += f"; {clause}"
    return {"units": note, "objective": config.objective, "history": history}
