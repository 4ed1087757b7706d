"""Every option of every command, given a hostile value (inf, nan, negative, huge, the wrong
type), is refused with one line on standard error and no traceback, before any data are
loaded or any training starts; and the other errors a user can cause (a hand-edited config on
``--resume``, a device that is not one, sizes no machine holds, a diverging learning rate,
damaged weights, a full disk, data that claim more memory than they hold) are one line too.

The options are read from the argparse parsers themselves, so that a new option is walked
without changing this file."""

from __future__ import annotations

import argparse
import contextlib
import io
import traceback
from pathlib import Path

import numpy as np
import pytest

from pyrovae.cli import build_parser, main
from pyrovae.runs.registry import RECIPES

#: Values no option should accept: not finite, negative, beyond any machine, not a number.
HOSTILE = ("inf", "nan", "-1", "-inf", "1e30", str(10**30), "ten", "")
#: Options whose value is any text (a path, a name): a hostile number there is a valid name.
#: Bad paths, datasets and factories have tests of their own (test_data, test_faults).
FREE_TEXT = {"--out", "--data-dir", "--factory-path", "--factory", "--dataset"}


def cli(argv: list[str]) -> tuple[int, list[str], str | None]:
    """Exit status, standard error's lines, and the traceback if main raised."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except SystemExit as e:
        code = e.code
    except Exception as e:  # a traceback where one line is promised
        return 1, err.getvalue().splitlines(), "".join(traceback.format_exception(e))
    return code, err.getvalue().splitlines(), None


def valued_options(parser: argparse.ArgumentParser) -> list[str]:
    """The flags of ``parser``'s options that take a value, except :data:`FREE_TEXT`."""
    return [
        action.option_strings[-1]
        for action in parser._actions
        if action.option_strings
        and action.nargs != 0
        and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
        and action.option_strings[-1] not in FREE_TEXT
    ]


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny data (rows and sequences) and a one-epoch run to reopen."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    rows = root / "rows.npz"
    np.savez(rows, x=rng.random((24, 4)).astype(np.float32), y=np.arange(24) % 2)
    sequences = root / "sequences.npz"
    np.savez(sequences, x=(rng.random((12, 5, 3)) > 0.5).astype(np.float32))
    run = root / "run"
    code, err, tb = cli(
        ["train", "vae", "--dataset", str(rows), "--out", str(run), "--epochs", "1",
         "--hidden", "8", "--latent-dim", "2", "--quiet", "--no-figures"]
    )  # fmt: skip
    assert code == 0 and tb is None, err
    return {"rows": rows, "sequences": sequences, "run": run, "root": root}


def walk(tiny) -> list[list[str]]:
    """Every command line the walk tries: one option given one hostile value."""
    cases = []
    root = tiny["root"]
    for model, recipe in RECIPES.items():
        data = tiny["sequences"] if recipe.sequences else tiny["rows"]
        base = ["train", model, "--dataset", str(data), "--out", str(root / f"t-{model}"),
                "--epochs", "1", "--quiet", "--no-figures"]  # fmt: skip
        train = subparsers(build_parser(model))["train"]
        for flag in valued_options(train):
            cases += [[*base, flag, value] for value in HOSTILE]
    for command, parser in subparsers(build_parser()).items():
        if command == "train":
            continue
        base = [command, str(tiny["run"])]
        if command == "sample":
            base += ["--out", str(root / "samples.png")]
        if command == "plot":
            base += ["--out", str(root / "figures")]
        for flag in valued_options(parser):
            cases += [[*base, flag, value] for value in HOSTILE]
    return cases


def test_every_option_refuses_hostile_values_in_one_line(tiny):
    failures = []
    cases = walk(tiny)
    assert len(cases) > 300  # every model's options: the walk is not empty
    for argv in cases:
        code, err, tb = cli(argv)
        if tb is not None or code == 0 or len(err) != 1 or "error" not in err[0]:
            what = tb.strip().splitlines()[-1] if tb else f"exit {code}, stderr {err[-3:]}"
            failures.append(f"{' '.join(argv[:2])} ... {' '.join(argv[-2:])!r}: {what}")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures)
