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
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
soft = size + HEADROOM if hard == resource.RLIM_INFINITY else min(size + HEADROOM, hard)
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
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


# ---- errors a user can cause: one line each -------------------------------------------------


def one_line(argv: list[str], *words: str) -> str:
    """Run the CLI, assert exit status 2 with one line on stderr holding ``words``; the line."""
    code, err, tb = cli(argv)
    assert tb is None, tb
    assert code == 2 and len(err) == 1, (code, err)
    for word in words:
        assert word in err[0], err[0]
    return err[0]


@pytest.fixture
def run_copy(tiny, tmp_path) -> Path:
    """A copy of the tiny one-epoch run, to damage."""
    import shutil

    return Path(shutil.copytree(tiny["run"], tmp_path / "run"))


def edit_config(run: Path, **changes) -> None:
    import json

    config = json.loads((run / "config.json").read_text())
    config.update(changes)
    (run / "config.json").write_text(json.dumps(config))


RESUME = ["--epochs", "2", "--resume", "--quiet", "--no-figures"]


@pytest.mark.parametrize(
    "changes",
    [
        {"latent_dim": "ten"},
        {"latent_dim": []},
        {"latent_dim": None},
        {"latent_dim": 3},
        {"batch_size": True},
    ],  # fmt: skip
    ids=["text", "list", "null", "mismatched-size", "bool-batch"],
)
def test_a_hand_edited_config_on_resume_is_one_line(run_copy, changes):
    edit_config(run_copy, **changes)
    key = next(iter(changes))
    one_line(["train", "vae", "--out", str(run_copy), *RESUME], "config.json", key)


def test_a_mismatched_size_without_the_checkpoints_copy_of_the_config_is_one_line(run_copy):
    import torch

    # The copy of config.json in the checkpoint is what catches a changed size; without it
    # (it is no tensor, so the checksum still holds) loading the weights must say it.
    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    del state["config"]
    torch.save(state, run_copy / "checkpoint.pt")
    edit_config(run_copy, latent_dim=3)
    one_line(["train", "vae", "--out", str(run_copy), *RESUME], "does not fit", "config.json")


def test_a_received_run_claiming_a_latent_dim_of_1e30_is_one_line(run_copy):
    edit_config(run_copy, latent_dim=10**30)
    one_line(["evaluate", str(run_copy), "--num-samples", "2"], "latent_dim", "beyond")


def test_nan_weights_in_a_checkpoint_with_a_valid_checksum_are_named_as_damage(run_copy):
    import torch

    from pyrovae.runs.record import CHECKSUM, checksum

    state = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name].view(-1)[0] = float("nan")
    state[CHECKSUM] = checksum(state)  # written so: no bit flipped after the save
    torch.save(state, run_copy / "checkpoint.pt")
    one_line(["evaluate", str(run_copy), "--num-samples", "2"], "damaged", "NaN", name)


@pytest.mark.parametrize("device", ["foo", "meta", "cuda:x"])
def test_a_device_that_is_not_one_is_named_on_train_and_evaluate(tiny, tmp_path, device):
    out = tmp_path / "r"
    train = ["train", "vae", "--dataset", str(tiny["rows"]), "--out", str(out), "--epochs", "1",
             "--quiet", "--no-figures", "--device", device]  # fmt: skip
    one_line(train, f"--device {device}", "use cpu")
    assert not out.exists()
    line = one_line(["evaluate", str(tiny["run"]), "--device", device], f"--device {device}")
    assert "checkpoint" not in line and "damaged" not in line  # the run is fine


@pytest.mark.parametrize(
    ("model", "option", "value"),
    [
        ("vae", "--latent-dim", "1000000000"),
        ("vae", "--hidden", "100000000"),
        ("vae", "--particles", "1000000000"),
        ("gmm", "--components", "1000000"),
    ],  # fmt: skip
)
def test_sizes_no_machine_holds_are_refused_before_allocating(tmp_path, model, option, value):
    import resource
    import time

    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    out = tmp_path / "r"
    one_line(["train", model, "--out", str(out), "--epochs", "1", "--quiet", "--no-figures",
              option, value], f"{option} {value}", "memory")  # fmt: skip
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KB
    assert time.perf_counter() - start < 30 and not out.exists()


def test_a_learning_rate_that_diverges_is_named(tiny, tmp_path):
    one_line(["train", "vae", "--dataset", str(tiny["rows"]), "--out", str(tmp_path / "r"),
              "--lr", "1e12", "--quiet", "--no-figures"], "--lr", "diverges")  # fmt: skip


def test_an_optimizer_step_that_diverges_is_named_not_a_pyro_value_error():
    import torch

    from pyrovae.errors import TrainingDiverged
    from pyrovae.guides import GaussianEncoder
    from pyrovae.infer import Trainer
    from pyrovae.models import VAE

    x = torch.rand(32, 4)
    kwargs = dict(input_dim=4, latent_dim=2, hidden_dims=(8,))
    model, guide = VAE(likelihood="continuous-bernoulli", **kwargs), GaussianEncoder(**kwargs)
    # The first loss is finite; the step of 1e30 it takes leaves infinite weights, which Pyro
    # reports as a distribution parameter outside its constraint (a ValueError).
    trainer = Trainer(model, guide, (x,), batch_size=16, lr=1e30, progress=False)
    with pytest.raises(TrainingDiverged, match="an optimizer step diverged"):
        trainer.run(2)


@pytest.fixture
def full_disk(monkeypatch):
    """Every figure written from now on fails as on a full disk."""
    import errno
    import os

    from matplotlib.figure import Figure

    def savefig(self, fname, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_figures_on_a_full_disk_are_one_line(tiny, tmp_path, full_disk):
    out = tmp_path / "r"
    one_line(["train", "vae", "--dataset", str(tiny["rows"]), "--out", str(out), "--epochs", "1",
              "--hidden", "8", "--quiet"], "no space left", "pyrovae plot")  # fmt: skip
    assert (out / "checkpoint.pt").exists()  # the run itself is saved
    one_line(["plot", str(out)], "no space left")
    one_line(["sample", str(out), "--out", str(tmp_path / "s.png")], "no space left")


def test_a_swapped_best_pt_is_one_line(tiny, tmp_path):
    import shutil

    runs = []
    for latent in ("2", "3"):
        out = tmp_path / f"ssvae{latent}"
        code, err, tb = cli(["train", "ssvae", "--dataset", str(tiny["rows"]), "--out", str(out),
                             "--epochs", "1", "--hidden", "8", "--latent-dim", latent,
                             "--validation-size", "4", "--quiet", "--no-figures"])  # fmt: skip
        assert code == 0 and tb is None, err
        runs.append(out)
    shutil.copy(runs[1] / "best.pt", runs[0] / "best.pt")
    one_line(["evaluate", str(runs[0]), "--num-samples", "2"], "best.pt", "another run")


def test_debug_shows_the_traceback(tiny, monkeypatch):
    from pyrovae.runs.record import RunError

    argv = ["evaluate", str(tiny["run"]), "--device", "foo"]
    with pytest.raises(RunError, match="--device foo"):
        main(["--debug", *argv])
    with pytest.raises(RunError, match="--device foo"):
        main([*argv, "--debug"])
    monkeypatch.setenv("PYROVAE_DEBUG", "1")
    with pytest.raises(RunError, match="--device foo"):
        main(argv)


def fake_chorales(monkeypatch):
    from pyrovae.data import sequences

    rolls = [np.eye(88, dtype=np.uint8)[: 3 + i] for i in range(10)]
    monkeypatch.setattr(sequences, "_chorale_paths", lambda: [f"/c/{i}.mxl" for i in range(10)])
    monkeypatch.setattr(sequences, "_convert", lambda path: rolls[int(path[3:-4])])


def test_chorales_without_music21_are_one_line_and_write_no_data_directory(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "music21", None)  # as if not installed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PYROVAE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    one_line(["train", "dmm", "--dataset", "chorales", "--out", "r", "--quiet"],
             "pip install music21")  # fmt: skip
    assert not (tmp_path / "data").exists() and not (tmp_path / "r").exists()


def test_the_chorales_cache_goes_to_the_users_cache_or_the_named_data_directory(
    tmp_path, monkeypatch
):
    from pyrovae.data import load_dataset

    fake_chorales(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PYROVAE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    load_dataset("chorales", sequences=True)
    assert (tmp_path / "cache" / "pyrovae" / "chorales.npz").exists()
    assert not (tmp_path / "data").exists()  # not a ./data of the working directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))  # no conversion cached
    load_dataset("chorales", tmp_path / "mine", sequences=True)
    assert (tmp_path / "mine" / "chorales.npz").exists()
