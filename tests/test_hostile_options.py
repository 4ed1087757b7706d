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


# ---- memory bombs in data ----------------------------------------------------------------

#: Loads each bomb under an address-space limit of what the interpreter holds plus
#: HEADROOM and prints, per bomb, the error's type, its lines and the peak memory it added.
BOMB_LOADER = """
import json, resource, sys

from pyrovae.data import load_dataset

HEADROOM = 512 * 2**20
with open("/proc/self/status") as f:
    size = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, resource.RLIM_INFINITY))
results = {}
for name, data_dir in json.loads(sys.argv[1]).items():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_dataset(name, data_dir)
        results[name] = ["loaded", "", 0]
    except Exception as e:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        results[name] = [type(e).__name__, str(e), grown * 1024]
print(json.dumps(results))
"""

#: Zeros a bomb expands to: more than the loader's headroom takes to load.
EXPANDED = 400 * 2**20


def write_zeros(f, total: int, chunk: int = 16 * 2**20) -> None:
    zeros = bytes(chunk)
    for _ in range(total // chunk):
        f.write(zeros)


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, str | None]:
    """Dataset name (a file, or mnist with a data directory) -> its data directory."""
    import gzip
    import zipfile

    root = tmp_path_factory.mktemp("bombs")
    lying = root / "lying.npy"  # (1e6, 1e6) float64 claimed, 64 bytes held
    lying.write_bytes(npy_header((10**6, 10**6)) + bytes(64))
    member = root / "member.npz"  # a member whose header claims 11 GiB
    with zipfile.ZipFile(member, "w") as z:
        z.writestr("x.npy", npy_header((11 * 2**30 // 8,)) + bytes(64))
    deflated = root / "deflated.npz"  # a true array of zeros, deflated to a few hundred KB
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(npy_header((EXPANDED // 1024, 1024), "|u1"))
            write_zeros(f, EXPANDED)
    mnist = root / "mnist"  # gigabytes of zeros, gzipped, named as MNIST's images
    mnist.mkdir()
    with gzip.open(mnist / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        write_zeros(f, EXPANDED)
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mnist / name).write_bytes(bytes(8))
    assert deflated.stat().st_size < EXPANDED / 100
    return {str(lying): None, str(member): None, str(deflated): None, "mnist": str(mnist)}


def test_memory_bombs_in_data_are_one_line_in_bounded_memory(bombs):
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", BOMB_LOADER, json.dumps(bombs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name, (kind, message, grown) in json.loads(result.stdout).items():
        assert kind == "DataError", (name, kind, message)
        assert "\n" not in message and Path(name).name in message, message
        assert grown < 64 * 2**20, (name, grown)  # not the bomb's expanded size
