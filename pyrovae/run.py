"""A training run on disk: build, train with a checkpoint every epoch, resume, reload.

A run directory holds::

    config.json      the settings, including those resolved from the data
    checkpoint.pt    model, guide and optimizer state, epoch, RNG states, history
    metrics.json     per-epoch train and test ELBO, nats per example (higher is better)
    figures/*.png    reconstructions, samples, traversals, interpolation, latent map, curves

Every file is written atomically; the directory is created only once the data, the
model and a first loss evaluation have succeeded, so a bad input leaves nothing behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch

from . import ssvae_run
from .builders import FACTORY_DATA, FACTORY_SUFFIX, build, load_splits, save_splits
from .checkpoint import CHECKPOINT, load_checkpoint, read_json, save_checkpoint, write_json
from .config import TrainConfig
from .data import FILE_EXTENSIONS, DataSplits, binarize_fixed
from .diagnostics import figures
from .families import family
from .infer import Trainer, collect_params, make_objective

Log = Callable[[str], None]


class RunError(RuntimeError):
    """A run directory cannot be used as asked (missing, already trained, damaged)."""


@dataclass
class Run:
    """A run rebuilt from disk (or just trained): the pair, its data and its record."""

    path: Path
    config: TrainConfig
    model: Callable
    guide: Callable
    data: DataSplits
    history: list[dict] = field(default_factory=list)
    #: ssvae: the epoch (and its validation accuracy) of the model in use, from best.pt.
    selected: dict | None = None

    def test_inputs(self) -> torch.Tensor:
        """The test rows as the model sees them (binarized once, with a fixed seed, if needed)."""
        return _test_x(self.config, self.data).to(self.config.device)


def _prepare(log: Log) -> Callable[[TrainConfig, DataSplits], None]:
    def prepare(config: TrainConfig, data: DataSplits) -> None:
        config.input_dim = data.input_dim
        config.image_shape = list(data.image_shape) if data.image_shape else None
        log(
            f"data: {data.name}, {len(data.train_x)} train / {len(data.test_x)} test examples "
            f"of dimension {data.input_dim}"
        )
        family(config.model).prepare(config, data, log)

    return prepare


def _test_x(config: TrainConfig, data: DataSplits) -> torch.Tensor:
    return binarize_fixed(data.test_x, seed=0) if config.binarize == "dynamic" else data.test_x


def _to_device(program: Callable, device: str) -> None:
    if isinstance(program, torch.nn.Module):
        program.to(device)


def _absolute_paths(config: TrainConfig) -> None:
    """Record --data-dir and a data file as absolute paths, so the run reloads from anywhere."""
    if config.data_dir:
        config.data_dir = str(Path(config.data_dir).expanduser().resolve())
    dataset = Path(config.dataset).expanduser()
    if dataset.suffix.lower() in FILE_EXTENSIONS:
        config.dataset = str(dataset.resolve())


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )


def run_files(out: Path) -> list[Path]:
    return [
        out / CHECKPOINT,
        out / ssvae_run.BEST,
        out / "config.json",
        out / "metrics.json",
        out / "eval.json",
        out / FACTORY_DATA,
        out / "figures",
    ]


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Run:
    """Train the run described by ``config`` into ``config.out``; see the module docstring.

    With ``resume`` the saved configuration is used (only ``epochs`` and ``device`` are taken
    from ``config``) and training continues from the last checkpoint, reaching the same
    numbers as an uninterrupted run with the same seed on CPU.
    """
    out = Path(config.out)
    checkpoint_path = out / CHECKPOINT
    state = None
    if resume:
        if not checkpoint_path.exists():
            raise RunError(
                f"--resume: {out} holds no checkpoint to continue; train without --resume"
            )
        saved = TrainConfig.from_dict(read_json(out / "config.json"))
        saved.epochs, saved.device, saved.out = config.epochs, config.device, str(out)
        refusal = family(saved.model).refuse_resume(saved)
        if refusal:
            raise RunError(refusal)
        config = saved
        state = load_checkpoint(checkpoint_path, map_location=config.device)
        if state["epoch"] >= config.epochs:
            raise RunError(
                f"{out} has already trained {state['epoch']} epochs; to train longer pass "
                f"--epochs N with N > {state['epoch']}"
            )
    elif any(p.exists() for p in run_files(out)) and not overwrite:
        raise RunError(
            f"{out} already holds a run; pass --resume to continue it, --overwrite to replace "
            "it, or choose another --out"
        )
    config.validate()
    _check_device(config.device)
    if not resume:
        _absolute_paths(config)
    pyro.set_rng_seed(config.seed)
    hooks = family(config.model)
    fitted = hooks.fit_without_svi(
        config, overwrite=overwrite, progress=progress, log=log, prepare=_prepare(log)
    )
    if fitted is not None:
        return fitted
    if hooks.objective is not None:  # e.g. "enum": z (gmm) or y (ssvae) summed out exactly
        config.objective = hooks.objective
    built = build(config, _prepare(log), saved=_saved_data(out, config))
    model, guide = built.model, built.guide
    setup = hooks.setup(config, built.data, guide, out, log)
    data = setup.data
    for program in (model, guide):
        _to_device(program, config.device)
    if state is None:
        hooks.initialize(config, model, data)

    def transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Dynamic binarization; resolve_likelihood checked once that x lies in [0, 1].
        return torch.bernoulli(x, generator=generator)

    def save_epoch(trainer: Trainer) -> None:
        save_checkpoint(checkpoint_path, {**trainer.state_dict(), "config": config.to_dict()})
        write_json(out / "metrics.json", _metrics(config, trainer.history))

    trainer = Trainer(
        model,
        guide,
        setup.train_data,
        test_data=(_test_x(config, data),),
        batch_size=config.batch_size,
        lr=config.lr,
        objective=setup.objective,
        num_particles=config.num_particles,
        dreg=config.dreg,
        transform=transform if config.binarize == "dynamic" else None,
        seed=config.seed,
        metrics=setup.metrics,
        callbacks=[save_epoch, *setup.callbacks],
        progress=progress,
        device=config.device,
        capture=config.capture,
    )
    if isinstance(trainer.objective, str):
        config.objective = trainer.objective  # "auto" resolved from the program
    if state is not None:
        trainer.load_state_dict(state)
        log(f"resuming {out} at epoch {trainer.epoch + 1} of {config.epochs}")
    elif overwrite:
        for path in run_files(out):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if state is None and config.dataset.endswith(FACTORY_SUFFIX):
        save_splits(out / FACTORY_DATA, built.data)  # reopened from here, not a new call
    write_json(out / "config.json", config.to_dict())
    try:
        trainer.run(config.epochs)
    except KeyboardInterrupt:
        log(
            f"\ninterrupted; {out / CHECKPOINT} holds epoch {trainer.epoch}. Continue with "
            f"pyrovae train {config.model} --out {out} --epochs {config.epochs} --resume"
        )
        raise
    run = Run(out, config, model, guide, data, list(trainer.history))
    extra = hooks.finish(run, log)
    if extra:
        write_json(out / "metrics.json", {**_metrics(config, trainer.history), **extra})
    if config.figures:
        paths = plot(run)
        log(f"figures: {', '.join(p.name for p in paths)} in {out / 'figures'}")
    last = trainer.history[-1]
    log(
        f"done: epoch {last['epoch']}, train ELBO {last['train_elbo']:.2f}, test ELBO "
        f"{last['test_elbo']:.2f} nats per example; run saved in {out}"
    )
    return run


def _saved_data(out: Path, config: TrainConfig) -> DataSplits | None:
    """A reopened factory run's own copy of its factory's data, or None."""
    if config.dataset.endswith(FACTORY_SUFFIX) and (out / FACTORY_DATA).exists():
        return load_splits(out / FACTORY_DATA, config.dataset)
    return None


def _metrics(config: TrainConfig, history: list[dict]) -> dict:
    note = "nats per example, higher is better; test_elbo is a one-sample estimate of the ELBO"
    if config.beta != 1.0:
        note += f"; train_elbo is the beta-weighted bound (beta = {config.beta})"
    if config.objective == "iwae":
        note += f"; train_elbo is the IWAE bound with K = {config.num_particles}"
    family_note = family(config.model).units(config)
    if family_note:
        note += f"; {family_note}"
    return {"units": note, "objective": config.objective, "history": history}


def load_run(run_dir: str | Path, device: str = "cpu", log: Log | None = None) -> Run:
    """Rebuild a run's model, guide and data from ``config.json`` and ``checkpoint.pt``."""
    path = Path(run_dir)
    if not (path / "config.json").exists():
        raise RunError(
            f"{path} is not a pyrovae run (no config.json); train one with pyrovae train"
        )
    config = TrainConfig.from_dict(read_json(path / "config.json"))
    config.device = device
    _check_device(device)
    state = load_checkpoint(path / CHECKPOINT, map_location=device)
    built = build(config, _prepare(log or (lambda message: None)), saved=_saved_data(path, config))
    for program, key in ((built.model, "model"), (built.guide, "guide")):
        if isinstance(program, torch.nn.Module):
            saved = [v for v in state[key].values() if v.is_floating_point()]
            if saved and all(v.dtype == torch.float64 for v in saved):
                program.double()  # e.g. a mixture fit by EM in float64
            program.load_state_dict(state[key])
            program.to(device)
    run = Run(path, config, built.model, built.guide, built.data, list(state["history"]))
    family(config.model).loaded(run)
    if state.get("params"):
        # Programs in Pyro's classic style create their pyro.param sites when first run.
        collect_params(
            make_objective(config.objective), run.model, run.guide, (run.test_inputs()[:8],)
        )
        store = pyro.get_param_store()
        with torch.no_grad():
            for name, value in state["params"].items():
                store.get_param(name).unconstrained().copy_(value)
    return run


def plot(run: Run, out_dir: str | Path | None = None) -> list[Path]:
    """Write the run's figures (default ``RUN_DIR/figures``); returns their paths."""
    return family(run.config.model).figures(run, Path(out_dir or run.path / "figures"))


def sample(run: Run, n: int, out_path: str | Path, seed: int = 0) -> Path:
    """A grid of E[x | z] for ``n`` draws z ~ p(z) (a mixture: of draws x ~ p(x)), written to
    ``out_path`` (PNG)."""
    if run.data.image_shape is None:
        raise RunError(
            f"{run.path} was trained on data that are not images (no image shape); "
            "sampling to a picture needs image data"
        )
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images, title = family(run.config.model).draw(run, n)
    grid = images.reshape(n, *run.data.image_shape)
    return figures.save_image_grid(grid, out_path, title=title)
