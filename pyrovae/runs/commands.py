"""The work of each ``pyrovae`` command, given its parsed arguments: :mod:`pyrovae.cli`
builds the parser and calls the function of this module named as the command (``train``,
``evaluate``, ``sample``, ``plot``, ``compare``), each a few calls into the run layer."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from . import comparison, evaluation, reopen, training
from .config import common_fields
from .paths import check_out_dir, check_out_file
from .processes import process_group, rank_device
from .record import Run
from .registry import config_for, recipe_for
from .resume import check_given


def train(args: argparse.Namespace) -> None:
    names = {f.name for f in common_fields()}
    names |= {f.name for f in dataclasses.fields(recipe_for(args.model).options)}
    values = {k: v for k, v in vars(args).items() if k in names - {"model"}}
    if values.get("out") is None:
        values["out"] = f"runs/{args.model.replace(':', '_').replace('.', '_')}"
    log = (lambda message: None) if args.quiet else (lambda message: print(message, flush=True))
    values["device"] = rank_device(values.get("device", "cpu"))
    given = getattr(args, "_given", ())  # the settings the command line named
    if args.resume and "epochs" not in given:
        values["epochs"] = None  # the run's own
    config = config_for(args.model, **values)
    if args.resume:
        check_given(config, Path(values["out"]), given)
    with process_group(values["device"]):  # under torchrun: one rank of several
        training.train(
            config,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.quiet,
            log=log,
            factory_path=tuple(args.factory_path),
        )


def _opened(args: argparse.Namespace, device: str) -> Run:
    """The run ``args.run_dir``, reopened with the factory the user named, if any."""
    return reopen.load_run(
        args.run_dir, device=device, factory_path=tuple(args.factory_path), factory=args.factory
    )


def sample(args: argparse.Namespace) -> None:
    check_out_file(args.out)
    run = _opened(args, args.device)
    path = reopen.sample(run, args.n, args.out, seed=args.seed)  # checks the grid's size
    print(f"wrote {path}")


def evaluate(args: argparse.Namespace) -> None:
    evaluation.check_arguments(args.num_samples, args.batch_size)
    device = rank_device(args.device)
    with process_group(device):  # under torchrun: the test examples split over the ranks
        evaluation.evaluate(
            _opened(args, device),
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            progress=not args.quiet,
            seed=args.seed,
        )


def plot(args: argparse.Namespace) -> None:
    if args.out is not None:
        check_out_dir(args.out)
    run = _opened(args, args.device)
    if args.out is None:
        check_out_dir(run.path / "figures")
    for path in reopen.plot(run, args.out):
        print(f"wrote {path}")


def compare(args: argparse.Namespace) -> None:
    table, num_examples = comparison.compare_runs(args.run_dirs)
    print(comparison.comparison_text(table, num_examples))
