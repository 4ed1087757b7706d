"""A run reopened from its directory: :func:`load_run`, and what is done with it (``plot``,
``sample``). Reopening reads ``config.json`` and the checkpoint (regular files only; tensors,
never pickled objects, checked against their checksum) and builds the pair by its recipe; for
a factory run that means importing and calling the factory named in ``config.json``, which
is done only when the user names it (:func:`check_factory`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path

import pyro
import torch

from ..data import DataSplits
from ..infer import collect_params, make_objective
from .config import TrainConfig, check_types
from .data import load_splits
from .inputs import as_args, head
from .recipes.factory import FACTORY_SUFFIX
from .record import (
    CHECKPOINT,
    CONFIG,
    DATA_COPY,
    INITIALIZING,
    PHASE,
    Run,
    RunError,
    load_checkpoint,
    read_json,
)
from .registry import RECIPES, read_config, recipe_for

Log = Callable[[str], None]


def check_device(device: str) -> None:
    """Raise RunError naming ``device`` when it is not one to compute on here: not a device
    name at all (``foo``), one that holds no data (``meta``), or CUDA on a machine without it;
    before any checkpoint is read, so that a good checkpoint is never called damaged."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda", "mps", "xpu"):
        raise RunError(f"--device {device}: not a device to compute on; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RunError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    if kind in ("mps", "xpu") and not getattr(torch, kind).is_available():
        raise RunError(f"--device {device}: {kind} is not available on this machine; use cpu")


def open_data(path: Path, config: TrainConfig) -> DataSplits | None:
    """A run's own copy of data no dataset name reloads, or None. Only a factory run whose
    config says its factory returned its data has one: a ``factory_data.npz`` in any other
    run (a built-in model's, say) was not written by pyrovae and is never read."""
    if config.model in RECIPES or not config.dataset.endswith(FACTORY_SUFFIX):
        return None
    if not (path / DATA_COPY).exists() and not (path / DATA_COPY).is_symlink():
        raise RunError(
            f"{path / DATA_COPY} is missing: {path / CONFIG} says the run's factory returned "
            "its data, kept in that file; the run directory is damaged (restore the file)"
        )
    return load_splits(path / DATA_COPY, config.dataset)


def load_run(
    run_dir: str | Path,
    device: str = "cpu",
    log: Log | None = None,
    factory_path: tuple[str, ...] = (),
    factory: str | None = None,
) -> Run:
    """Rebuild a run's model, guide and data from ``config.json`` and ``checkpoint.pt``.

    A factory run's factory is code named by the run: it is imported and called only when the
    caller names it (:func:`check_factory`: ``factory``, equal to the one config.json names,
    or ``factory_path``, directories one of which holds it), from the installed environment
    or ``factory_path`` only (never implicitly from the working or the run directory), and
    the file imported is said (on ``log``, else standard error)."""
    path = Path(run_dir)
    if not (path / CONFIG).exists() and not (path / CONFIG).is_symlink():
        raise RunError(
            f"{path} is not a pyrovae run (no config.json); train one with pyrovae train"
        )
    config = checked_config(path).replace(device=device)
    check_factory(path, config.model, factory, factory_path)
    check_device(device)
    state = load_checkpoint(path / CHECKPOINT, map_location=device)
    check_agreement(path, config, state)
    if state.get(PHASE) == INITIALIZING:
        raise RunError(
            f"{path} was stopped while it was being initialised (before its first SVI epoch), "
            f"so it holds no trained model yet; continue it with pyrovae train {config.model} "
            f"--out {path} --resume"
        )
    recipe = recipe_for(config.model)
    built = recipe.build(config, saved=open_data(path, config), code_path=tuple(factory_path))
    for message in built.messages if log else ():
        log(message)
    if built.code:
        (log or _to_stderr)(f"{path}: importing the {built.code}")
    for program, key in ((built.model, "model"), (built.guide, "guide")):
        if isinstance(program, torch.nn.Module):
            try:
                program.load_state_dict(state[key])
            except (KeyError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                raise RunError(
                    f"{path / CHECKPOINT} does not fit the {key} that {CONFIG} describes "
                    f"({first}); the run directory is mixed or damaged"
                ) from None
            program.to(device)
    test_x = recipe.test_inputs(built.config, built.data)
    run = Run(
        path, built.config, built.model, built.guide, built.data, test_x, list(state["history"])
    )
    run = recipe.reopen(run)
    if state.get("params"):
        # Programs in Pyro's classic style create their pyro.param sites when first run.
        objective = make_objective(config.objective)
        collect_params(objective, run.model, run.guide, as_args(head(run.test_inputs(), 8)))
        store = pyro.get_param_store()
        with torch.no_grad():
            for name, value in state["params"].items():
                store.get_param(name).unconstrained().copy_(value)
    return run


def check_factory(
    path: Path, model: str, factory: str | None, factory_path: tuple[str, ...]
) -> None:
    """Refuse, in one line and before anything is imported, to reopen a factory run whose
    factory the user did not name: ``factory`` must be the one the run names, or, without it,
    the factory's module must be in one of ``factory_path``'s directories. A run received from
    someone else thus never runs a callable of its choosing (os:abort, shutil:rmtree, a
    function of an installed package) on the reader's machine."""
    if model in RECIPES:
        return
    top = model.partition(":")[0].split(".")[0]
    if factory is not None:
        if factory != model:
            raise RunError(
                f"{path} was trained with the factory {model}, not --factory {factory}; "
                f"pass --factory {model} if you trust that code"
            )
        return
    dirs = [str(Path(d).expanduser().resolve()) for d in factory_path]
    if not dirs:
        raise RunError(
            f"{path} was trained with the factory {model}: reopening it imports and runs that "
            f"code. If you trust it, pass --factory {model} (installed) or --factory-path DIR "
            f"(the directory that holds {top})"
        )
    loaded = getattr(sys.modules.get(top), "__file__", None)
    found = PathFinder.find_spec(top, dirs) if top not in sys.builtin_module_names else None
    inside = loaded is None or any(Path(loaded).resolve().is_relative_to(d) for d in dirs)
    if found is None or not inside:
        raise RunError(
            f"{path} was trained with the factory {model}, whose module {top} is not in "
            f"--factory-path {' '.join(dirs)}; pass the directory that holds it, or "
            f"--factory {model} if you trust it as installed"
        )


def checked_config(path: Path) -> TrainConfig:
    """A run's config.json, checked before anything is built: known keys, types and values
    that can work; a damaged one is named in one line."""
    try:
        config = read_config(read_json(path / CONFIG))
        check_types(config)
        config.validate()
    except (TypeError, ValueError) as e:
        raise RunError(
            f"{path / CONFIG} is not a usable run configuration: {e}; the run directory is "
            "damaged (retrain, or restore config.json)"
        ) from None
    return config


#: Settings a reopened or resumed run may change: they need not match the checkpoint's copy.
PER_CALL = ("device", "epochs", "out")


def check_agreement(path: Path, config: TrainConfig, state: dict) -> None:
    """Raise RunError when config.json disagrees with the copy of it the checkpoint holds: a
    mixed directory (one file from each of two runs), or a hand-edited setting (a changed
    ``latent_dim``), is named, not loaded."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    ours = {k: v for k, v in config.to_dict().items() if k not in PER_CALL}
    for key, value in ours.items():
        if key in saved and saved[key] != value:
            raise RunError(
                f"{path / CONFIG} and {path / CHECKPOINT} disagree on {key} ({value!r} against "
                f"{saved[key]!r}): they come from different runs; retrain, or restore the "
                "matching files"
            )


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def plot(run: Run, out_dir: str | Path | None = None) -> list[Path]:
    """Write the run's figures (default ``RUN_DIR/figures``); returns their paths."""
    return recipe_for(run.config.model).figures(run, Path(out_dir or run.path / "figures"))


def sample(run: Run, n: int, out_path: str | Path, seed: int = 0) -> Path:
    """A picture of ``n`` draws from the model, written to ``out_path`` (PNG) by its recipe
    (a VAE: the grid of E[x | z], z ~ p(z); a mixture: draws x ~ p(x); a sequence model:
    piano rolls), under a random stream seeded with ``seed``."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return recipe_for(run.config.model).write_samples(run, n, Path(out_path))
