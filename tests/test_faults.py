"""Faults injected into runs, as an adversary or bad luck would: concurrent trainers on one
directory, a failure or interrupt before the first checkpoint, --overwrite that fails, a full
disk, a kill during a checkpoint write, a mixed or damaged run directory, a malicious pickle
and a malicious module beside a run. Each test reproduces the failure the issue
"Runs that cannot be mixed, stranded or turned against their reader" describes."""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.cli import main
from pyrovae.runs import load_run
from pyrovae.runs.lock import RunLock
from pyrovae.runs.record import RunError

QUICK = ["--hidden", "16", "--latent-dim", "2", "--quiet", "--no-figures"]

# A factory whose model returns NaN from the step given by the environment on (the first step
# is the capture check), and which can sleep in its first epoch so a second process can try
# the same directory meanwhile.
FACTORY = """
import os
import time

import pyro
import pyro.distributions as dist
import torch

from pyrovae.guides import GaussianEncoder
from pyrovae.models import VAE

calls = {"n": 0}


class Flaky(VAE):
    def forward(self, x, y=None):
        calls["n"] += 1
        if calls["n"] == 2 and os.environ.get("SLOW_FIRST_EPOCH"):
            time.sleep(float(os.environ["SLOW_FIRST_EPOCH"]))
        super().forward(x, y)
        nan_from = int(os.environ.get("NAN_FROM_CALL", "0"))
        if nan_from and calls["n"] >= nan_from:
            pyro.factor("broken", torch.tensor(float("-inf")))  # an infinite loss


def make(input_dim, latent_dim, hidden_dims):
    kwargs = dict(input_dim=input_dim, latent_dim=latent_dim, hidden_dims=hidden_dims)
    return (
        Flaky(likelihood="continuous-bernoulli", **kwargs),
        GaussianEncoder(**kwargs),
    )


def make_with_data(latent_dim, hidden_dims):
    # A pair and its own data, which the run keeps (factory_data.npz).
    return (*make(16, latent_dim, hidden_dims), torch.rand(300, 16))
"""


@pytest.fixture
def factory(tmp_path, monkeypatch) -> str:
    (tmp_path / "flaky_pair.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("flaky_pair", None)
    yield "flaky_pair:make"
    sys.modules.pop("flaky_pair", None)


def files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.exists() else set()


def test_a_second_trainer_into_a_locked_directory_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        started = time.perf_counter()
        with pytest.raises(RunError, match=rf"being trained by process {os.getpid()}"):
            with RunLock(out):
                pass
        assert time.perf_counter() - started < 5
    with RunLock(out):  # released on exit: the next one gets it
        pass


def test_two_processes_training_one_directory_never_mix(tmp_path, factory):
    """The second process (train, then --resume) is refused while the first trains; the
    directory holds the first one's run only."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SLOW_FIRST_EPOCH": "15"}
    first = subprocess.Popen(
        [sys.executable, "-m", "pyrovae", "train", factory, "--out", str(out), "--epochs",
         "1", "--seed", "1", *QUICK],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, "the first trainer never took the lock"
            time.sleep(0.2)
        for extra in ([], ["--resume"]):
            second = subprocess.run(
                [sys.executable, "-m", "pyrovae", "train", factory, "--out", str(out),
                 "--epochs", "1", "--seed", "2", *QUICK, *extra],
                env={**env, "SLOW_FIRST_EPOCH": ""}, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert second.returncode == 2, second.stderr
            assert f"being trained by process {first.pid}" in second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
        first.stderr.close()
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert load_run(out, factory_path=(str(tmp_path),)).config.seed == 1


def test_a_failure_before_the_first_checkpoint_leaves_nothing_behind(
    tmp_path, factory, monkeypatch
):
    out = tmp_path / "run"
    monkeypatch.setenv("NAN_FROM_CALL", "4")  # past the first-step checks, inside epoch 1
    assert main(["train", factory, "--out", str(out), "--epochs", "2", *QUICK]) == 2
    assert not out.exists()
    monkeypatch.delenv("NAN_FROM_CALL")
    sys.modules.pop("flaky_pair", None)
    assert main(["train", factory, "--out", str(out), "--epochs", "1", *QUICK]) == 0  # no refusal


def test_an_interrupt_in_the_first_epoch_strands_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    import pyrovae.runs.training as training

    class Interrupted(training.Trainer):
        def run(self, epochs):
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "Trainer", Interrupted)
    args = ["train", "vae", "--out", str(out), "--epochs", "1", "--hidden", "16", "--no-figures"]
    assert main(args) == 130
    assert not out.exists()
    printed = capsys.readouterr().out
    assert "nothing was saved" in printed and "--resume" not in printed


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(
    tmp_path, factory, monkeypatch
):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    old = (out / "checkpoint.pt").read_bytes()
    monkeypatch.setenv("NAN_FROM_CALL", "4")
    args = ["train", factory, "--out", str(out), "--epochs", "1", "--overwrite", "--eager"]
    args += QUICK
    assert main(args) == 2
    assert (out / "checkpoint.pt").read_bytes() == old  # the old run, whole
    assert json.loads((out / "config.json").read_text())["model"] == "vae"
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".staged"))]


def test_a_full_disk_is_named_and_the_last_checkpoint_survives(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    import pyrovae.runs.record as record

    def full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    monkeypatch.setattr(record.torch, "save", full)
    monkeypatch.setattr(record, "_free_bytes", lambda path: 0)
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "--resume" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_kill_during_a_checkpoint_write_leaves_a_readable_checkpoint(tmp_path):
    """kill -9 while the checkpoint of epoch 2 is written: the one of epoch 1 stays whole, the
    temporary file left behind is removed by the next write."""
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        import pyrovae.runs.record as record
        real = torch.save
        calls = {{"n": 0}}
        def save(obj, path, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                with open(path, "wb") as f:
                    f.write(b"half a checkpoint")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(obj, path, *a, **k)
        record.torch.save = save
        from pyrovae.cli import main
        main(["train", "vae", "--out", {str(tmp_path / "run")!r}, "--epochs", "3",
              "--hidden", "16", "--latent-dim", "2", "--quiet", "--no-figures"])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL
    out = tmp_path / "run"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    stale = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert stale, "the killed write left its temporary file"
    for path in stale:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert main(["train", "vae", "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_mixed_run_directory_is_named_not_loaded(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "vae", "--out", str(a), "--epochs", "1", *QUICK]) == 0
    args = ["train", "vae", "--out", str(b), "--epochs", "1", "--hidden", "16", "--latent-dim"]
    assert main([*args, "3", "--quiet", "--no-figures"]) == 0
    (a / "checkpoint.pt").write_bytes((b / "checkpoint.pt").read_bytes())
    assert main(["evaluate", str(a), "--num-samples", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "disagree on latent_dim (2 against 3)" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("latent_dim", -3, "--latent-dim must be at least 1, got -3"),
        ("latent_dim", "ten", "latent_dim must be int, got 'ten'"),
        ("no_such_setting", 1, "unknown settings ['no_such_setting']"),
    ],
)
def test_a_damaged_config_is_named_in_one_line(tmp_path, capsys, key, value, message):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, key: value}))
    capsys.readouterr()
    assert main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "config.json is not a usable run configuration" in err
    assert err.count("\n") == 1


def test_cuda_asked_without_cuda_is_named_not_called_damaged(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    capsys.readouterr()
    for args in (["train", "vae", "--out", str(out), "--epochs", "2", "--resume", "--device",
                  "cuda", "--quiet"], ["evaluate", str(out), "--device", "cuda"]):  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "CUDA is not available on this machine" in err and "damaged" not in err


def test_a_malicious_pickle_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format_version": 1, "model": Evil()}, out / "checkpoint.pt")
    assert main(["evaluate", str(out), "--num-samples", "2", "--quiet"]) == 2
    assert not marker.exists()
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_a_module_beside_a_run_or_in_the_working_directory_is_never_imported(
    tmp_path, monkeypatch, capsys
):
    """A factory run someone sent, with a module of the factory's name beside it: reopening
    imports nothing from the working or the run directory unless --factory-path says so."""
    out = tmp_path / "shared_run"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "their_pair.py").write_text(
        "from pyrovae.guides import GaussianEncoder\nfrom pyrovae.models import VAE\n"
        "def make(input_dim, latent_dim, hidden_dims):\n"
        "    k = dict(input_dim=input_dim, latent_dim=latent_dim, hidden_dims=hidden_dims)\n"
        "    return VAE(likelihood='continuous-bernoulli', **k), GaussianEncoder(**k)\n"
    )
    monkeypatch.chdir(tmp_path / "theirs")
    before = list(sys.path)
    assert main(["train", "their_pair:make", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    sys.path[:] = before  # as in a new process: training put its directory on the path
    sys.modules.pop("their_pair", None)
    marker = tmp_path / "pwned"
    evil = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef make(**k):\n    pass\n"
    (out / "their_pair.py").write_text(evil)
    monkeypatch.chdir(out)  # the reader opens the run from inside it
    capsys.readouterr()
    assert main(["evaluate", ".", "--num-samples", "2", "--quiet"]) == 2
    assert not marker.exists()
    assert "--factory-path" in capsys.readouterr().err
    theirs = str(tmp_path / "theirs")
    assert main(["evaluate", ".", "--num-samples", "2", "--quiet", "--factory-path", theirs]) == 0
    assert not marker.exists()
    assert f"importing the factory their_pair:make from {theirs}" in capsys.readouterr().err
    sys.modules.pop("their_pair", None)


def test_an_os_error_other_than_a_full_disk_keeps_its_traceback():
    from pyrovae.runs.errors import is_user_error

    assert not is_user_error(OSError(errno.EIO, "input/output error"))


# ---- a received run acts on nothing of yours (issue 36) ------------------------------------


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sent") / "run"
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    return out


@pytest.fixture
def received(trained_vae, tmp_path) -> Path:
    """A copy of a one-epoch VAE run, as someone sent it, for a test to tamper with."""
    out = tmp_path / "received"
    shutil.copytree(trained_vae, out, ignore=shutil.ignore_patterns(".lock"))
    return out


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1, err
    return err


def evaluate(run: Path, *extra: str) -> int:
    return main(["evaluate", str(run), "--num-samples", "2", "--quiet", *extra])


@pytest.mark.parametrize("target", ["os:abort", "builtins:input", "shutil:rmtree", "os:fork"])
def test_a_received_run_naming_a_library_callable_never_calls_it(
    received, target, tmp_path, monkeypatch, capsys
):
    """config.json names os:abort (say) and the checkpoint's copy of the config is gone, so
    no agreement check stops it: reopening neither imports nor calls it, even when the
    reader names it or a directory."""
    module, _, name = target.partition(":")
    calls = []
    monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **k: calls.append(a))
    config = json.loads((received / "config.json").read_text())
    (received / "config.json").write_text(json.dumps({**config, "model": target}))
    state = torch.load(received / "checkpoint.pt", weights_only=True)
    del state["config"]
    torch.save(state, received / "checkpoint.pt")
    assert evaluate(received) == 2
    assert not calls
    assert "--factory" in one_line(capsys)
    for trusting in (["--factory", target], ["--factory-path", str(tmp_path)]):
        assert evaluate(received, *trusting) == 2
        assert not calls
        assert target in one_line(capsys)


def test_a_factory_run_reopens_only_with_the_factory_named_on_the_command_line(
    tmp_path, factory, capsys
):
    out = tmp_path / "own"
    assert main(["train", factory, "--out", str(out), "--epochs", "1", *QUICK]) == 0
    sys.modules.pop("flaky_pair", None)
    assert evaluate(out) == 2
    assert f"--factory {factory}" in one_line(capsys)
    assert "flaky_pair" not in sys.modules  # refused before anything was imported
    assert evaluate(out, "--factory", "flaky_pair:other") == 2
    assert f"trained with the factory {factory}" in one_line(capsys)
    assert evaluate(out, "--factory", factory) == 0
    capsys.readouterr()
    args = ["--out", str(out), "--epochs", "2", "--resume", *QUICK]
    assert main(["train", "vae", *args]) == 2  # resuming names the run's own factory
    assert factory in one_line(capsys)
    assert main(["train", factory, *args]) == 0


def test_a_lock_linked_to_a_file_outside_the_run_is_never_written(received, tmp_path, capsys):
    yours = tmp_path / "yours.txt"
    yours.write_text("precious\n")
    resume = ["train", "vae", "--out", str(received), "--epochs", "2", "--resume", *QUICK]
    (received / ".lock").symlink_to(yours)
    assert main(resume) == 2
    assert ".lock" in one_line(capsys)
    (received / ".lock").unlink()
    os.link(yours, received / ".lock")  # a hard link: the same file under the run's name
    assert main(resume) == 2
    assert ".lock" in one_line(capsys)
    assert yours.read_text() == "precious\n"


def test_factory_data_planted_in_a_built_in_run_are_never_read(received, capsys):
    from pyrovae.data import split_arrays
    from pyrovae.runs.data import save_splits

    rows = np.random.default_rng(0).random((35, 64)).astype(np.float32)
    save_splits(received / "factory_data.npz", split_arrays(rows, None, "planted", seed=0))
    assert evaluate(received) == 0
    assert json.loads((received / "eval.json").read_text())["num_examples"] == 360


SPECIAL_FILES = """
import contextlib, io, os, resource, shutil, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))  # reading /dev/zero: bounded
from pyrovae.cli import main
sent, work = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("config.json", "checkpoint.pt"):
    for kind in ("fifo", "dev-zero", "directory"):
        run = work / f"{kind}-{name}"
        shutil.copytree(sent, run, ignore=shutil.ignore_patterns(".lock"))
        (run / name).unlink()
        if kind == "fifo":
            os.mkfifo(run / name)
        elif kind == "dev-zero":
            (run / name).symlink_to("/dev/zero")
        else:
            (run / name).mkdir()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(["evaluate", str(run), "--num-samples", "2", "--quiet"])
            except BaseException as e:
                code = repr(e)[:100]
        said = err.getvalue()
        print(kind, name, code, said.count("\\n"), said.strip(), flush=True)
"""


def test_run_files_that_are_fifos_devices_or_directories_are_refused_in_one_line(
    trained_vae, tmp_path
):
    """Six cases in one process (a child, so that a hang or an unbounded read ends it, not
    the test session): each refused in one line naming the file, without reading it."""
    result = subprocess.run(
        [sys.executable, "-c", SPECIAL_FILES, str(trained_vae), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 6, result.stdout + result.stderr
    for line in lines:
        kind, name, code, lines, err = line.split(" ", 4)
        assert code == "2" and lines == "1" and err.startswith("pyrovae: error: "), line
        assert name in err and "regular file" in err, line


def flip_a_weight_bit(checkpoint: Path) -> None:
    """Flip an exponent bit of the first weight, in the file's bytes."""
    state = torch.load(checkpoint, weights_only=True)
    weight = next(v for v in state["model"].values() if v.numel() >= 4)
    raw = checkpoint.read_bytes()
    at = raw.find(weight.numpy().tobytes())
    assert at >= 0
    damaged = bytearray(raw)
    damaged[at + 3] ^= 0x20  # float32 little-endian: the top byte holds the exponent
    checkpoint.write_bytes(bytes(damaged))


def test_a_flipped_bit_in_a_weight_is_named_a_damaged_checkpoint(received, capsys):
    flip_a_weight_bit(received / "checkpoint.pt")
    assert evaluate(received) == 2
    assert "damaged: checksum mismatch" in one_line(capsys)


def test_a_checkpoint_written_before_checksums_still_loads(received):
    state = torch.load(received / "checkpoint.pt", weights_only=True)
    state.pop("checksum", None)
    torch.save(state, received / "checkpoint.pt")
    assert evaluate(received) == 0


def test_python_m_pyrovae_inside_a_run_imports_no_module_planted_in_it(received, tmp_path):
    """``python -m`` puts the working directory first on sys.path: modules planted in a run
    under the names of pyrovae's dependencies are not imported from it."""
    marker = tmp_path / "imported"
    for name in ("torch", "numpy", "pyro", "sklearn", "scipy", "matplotlib", "arviz"):
        (received / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "pyrovae", "evaluate", ".", "--num-samples", "2", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=received,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    assert not marker.exists(), marker.read_text()
    assert result.returncode == 0, result.stderr


def test_python_m_pyrovae_still_trains_a_factory_from_the_working_directory(tmp_path):
    """The guard above takes the working directory off sys.path; training searches it
    explicitly for the factory, as the installed command does."""
    (tmp_path / "their_pair.py").write_text(
        "from pyrovae.guides import GaussianEncoder\nfrom pyrovae.models import VAE\n"
        "def make(input_dim, latent_dim, hidden_dims):\n"
        "    k = dict(input_dim=input_dim, latent_dim=latent_dim, hidden_dims=hidden_dims)\n"
        "    return VAE(likelihood='continuous-bernoulli', **k), GaussianEncoder(**k)\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "pyrovae", "train", "their_pair:make", "--out", "r", "--epochs",
         "1", *QUICK],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "checkpoint.pt").exists()


# ---- old work is never lost (issue 36) -----------------------------------------------------


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` (relative name: bytes), links as their target; the lock file
    (a trainer's PID) left out."""
    found = {}
    for p in sorted(path.rglob("*")):
        name = str(p.relative_to(path))
        if name == ".lock":
            continue
        if p.is_symlink():
            found[name] = os.readlink(p).encode()
        elif p.is_file():
            found[name] = p.read_bytes()
    return found


def leftovers(parent: Path) -> list[str]:
    """Staging directories and temporary files of a replacement, anywhere below ``parent``."""
    return [
        str(p.relative_to(parent))
        for p in parent.rglob("*")
        if ".new-" in p.name or ".old-" in p.name or p.name.endswith((".tmp", ".staged"))
    ]


@pytest.fixture
def old_run(trained_vae, tmp_path) -> Path:
    """A one-epoch VAE run that a test then tries to --overwrite."""
    out = tmp_path / "old"
    shutil.copytree(trained_vae, out, ignore=shutil.ignore_patterns(".lock"))
    return out


def overwrite(out: Path, model: str = "vae", *extra: str) -> int:
    return main(["train", model, "--out", str(out), "--epochs", "1", "--overwrite", *QUICK, *extra])


def test_overwrite_refuses_a_directory_pyrovae_did_not_write(tmp_path, capsys):
    """An application's config.json and figures/fig1.pdf: its figures/ were deleted and its
    config.json replaced."""
    app = tmp_path / "app"
    (app / "figures").mkdir(parents=True)
    (app / "config.json").write_text('{"name": "my app", "threads": 4}\n')
    (app / "figures" / "fig1.pdf").write_bytes(b"%PDF-1.4 figure")
    before = snapshot(app)
    assert overwrite(app) == 2
    err = one_line(capsys)
    assert "not a run pyrovae wrote" in err and "figures/fig1.pdf" in err
    assert snapshot(app) == before
    (app / "figures" / "fig1.pdf").unlink()
    assert overwrite(app) == 2
    assert "config.json is not a pyrovae configuration" in one_line(capsys)
    # A run with a file of the user's beside it is not only pyrovae's either.
    theirs = tmp_path / "theirs"
    shutil.copytree(app, theirs)
    (theirs / "config.json").unlink()
    (theirs / "figures" / "fig1.png").write_bytes(b"a figure")
    (theirs / "notes.txt").write_text("my notes\n")
    assert overwrite(theirs) == 2
    assert "it holds notes.txt" in one_line(capsys)


def test_overwrite_with_figures_a_symbolic_link_keeps_the_old_run(old_run, tmp_path, capsys):
    """checkpoint.pt, config.json and metrics.json were deleted, then an OSError traceback."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.png").write_bytes(b"yours")
    (old_run / "figures").symlink_to(elsewhere)
    before = snapshot(old_run)
    assert overwrite(old_run) == 2
    assert "figures is a symbolic link" in one_line(capsys)
    assert snapshot(old_run) == before and snapshot(elsewhere) == {"keep.png": b"yours"}
    (old_run / "figures").unlink()
    link = tmp_path / "link"
    link.symlink_to(old_run)  # --out a link to the run: the link would have been replaced
    assert overwrite(link) == 2
    assert f"pass --out {old_run}" in one_line(capsys)
    assert link.is_symlink() and snapshot(old_run) == {
        k: v for k, v in before.items() if k != "figures"
    }


def test_overwrite_on_a_full_disk_keeps_the_old_run_and_claims_no_checkpoint(
    old_run, factory, monkeypatch, capsys
):
    """The factory's data did not fit on the disk: the old run was deleted, and the message
    said "the last complete checkpoint is intact ... --resume"."""
    import pyrovae.runs.writer as writer

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(writer, "save_splits", full)
    before = snapshot(old_run)
    assert overwrite(old_run, factory.replace(":make", ":make_with_data")) == 2
    err = one_line(capsys)
    assert "no space left" in err and "as it was" in err
    assert "--resume" not in err and "checkpoint is intact" not in err
    assert snapshot(old_run) == before
    assert not leftovers(old_run.parent)


KILLED_WHILE_DATA = """
import os, signal, sys
import numpy as np
import pyrovae.runs.data as data
sys.path.insert(0, sys.argv[2])
def savez(f, **arrays):
    f.write(b"half the factory's data")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
data.np.savez = savez
from pyrovae.cli import main
main(["train", "flaky_pair:make_with_data", "--out", sys.argv[1], "--epochs", "1",
      "--overwrite", "--hidden", "16", "--latent-dim", "2", "--quiet", "--no-figures"])
"""


def test_a_kill_while_the_factory_data_is_written_keeps_the_old_run(old_run, tmp_path, factory):
    """kill -9 during factory_data.npz of a replacement: the old run was already deleted."""
    before = snapshot(old_run)
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_DATA, str(old_run), str(tmp_path)],
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert snapshot(old_run) == before
    assert leftovers(tmp_path), "the killed replacement left its staging directory"
    # The next trainer into the run finds the staging directory's writer dead: removed.
    data = factory.replace(":make", ":make_with_data")
    assert overwrite(old_run, data) == 0
    assert json.loads((old_run / "config.json").read_text())["model"] == data
    assert (old_run / "factory_data.npz").is_file()
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2", "two-renames"])
def test_exchange_swaps_a_staged_run_with_the_old_one(tmp_path, monkeypatch, atomic):
    import pyrovae.runs.lock as lock

    new, old = tmp_path / ".run.new-x", tmp_path / "run"
    for path, text in ((new, "new"), (old, "old")):
        path.mkdir()
        (path / "f").write_text(text)
    if not atomic:  # a system without renameat2
        monkeypatch.setattr(lock.ctypes, "CDLL", lambda *a, **k: object())
    lock.exchange(new, old)
    assert (old / "f").read_text() == "new" and (new / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.new-x", "run"]


def test_a_removed_lock_file_does_not_unlock_the_run(old_run, capsys):
    """rm RUN/.lock while A trains, then B --overwrite: A and B trained into one directory."""
    with RunLock(old_run):  # A
        (old_run / ".lock").unlink()
        before = snapshot(old_run)
        assert overwrite(old_run) == 2  # B
        assert "being trained by another process" in one_line(capsys)
        assert snapshot(old_run) == before
        with pytest.raises(RunError, match="being trained"):
            with RunLock(old_run):
                pass


def test_where_a_directory_cannot_be_locked_the_lock_file_is(tmp_path, monkeypatch):
    """NFS emulates flock with locks that need a file opened for writing: a directory's
    descriptor cannot be locked (EBADF), and the lock falls back to the lock file."""
    import fcntl
    import stat as stat_module

    import pyrovae.runs.lock as lock

    real = fcntl.flock

    def flock(fd, operation):
        if stat_module.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, operation)

    monkeypatch.setattr(lock.fcntl, "flock", flock)
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(RunError, match=rf"being trained by process {os.getpid()}"):
            with RunLock(out):
                pass
    with RunLock(out):
        pass


def test_a_dead_writers_temporary_files_are_removed_at_once_and_a_live_ones_kept(old_run):
    """Partial .tmp files of killed writes stayed in a run until they were 300 s old; one
    that a live writer holds (its lock) must stay."""
    import fcntl

    dead = old_run / ".checkpoint.pt.dead1234.tmp"
    dead.write_bytes(b"half a checkpoint")
    figure = old_run / "figures" / ".elbo.png.dead5678.tmp"
    figure.parent.mkdir()
    figure.write_bytes(b"half a figure")
    live = old_run / ".checkpoint.pt.live1234.tmp"
    live.write_bytes(b"being written")
    with open(live, "rb+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as atomic_write holds its temporary file
        args = ["train", "vae", "--out", str(old_run), "--epochs", "2", "--resume", *QUICK]
        assert main(args) == 0
        assert not dead.exists() and not figure.exists()
        assert live.read_bytes() == b"being written"
    from pyrovae.atomic import remove_stale_temporaries

    remove_stale_temporaries(old_run / "checkpoint.pt")  # its writer is gone now
    assert not live.exists()


def test_sample_out_at_a_fifo_or_device_is_refused(trained_vae, tmp_path, capsys):
    """The node was replaced by a PNG."""
    from pyrovae.runs.paths import check_out_file

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["sample", str(trained_vae), "--n", "4", "--out", str(fifo)]) == 2
    assert "not a regular file" in one_line(capsys)
    assert fifo.is_fifo()
    if Path("/dev/null").exists():  # checked only: nothing is written
        with pytest.raises(RunError, match="not a regular file"):
            check_out_file("/dev/null")


def test_sigterm_in_the_first_epoch_leaves_nothing(tmp_path, factory):
    """SIGTERM (as torchrun sends when a rank dies) left a directory holding only .lock."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SLOW_FIRST_EPOCH": "30"}
    trainer = subprocess.Popen(
        [sys.executable, "-m", "pyrovae", "train", factory, "--out", str(out), "--epochs",
         "1", *QUICK],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert trainer.poll() is None, trainer.stderr.read()
            assert time.time() < deadline, "the trainer never took the lock"
            time.sleep(0.2)
        time.sleep(1)
        trainer.terminate()
        assert trainer.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        trainer.kill()
        trainer.wait()
        trainer.stderr.close()
    assert not out.exists()


# ---- torchrun: no hang, no silent change of the global batch (issue 36) --------------------


def test_a_checkpoint_of_two_ranks_is_not_resumed_by_one_process(old_run, capsys):
    """The global batch (ranks x --batch-size) changed silently mid-run."""
    from pyrovae.runs.record import checksum

    state = torch.load(old_run / "checkpoint.pt", weights_only=True)
    own = {k: v for k, v in state["rng"].items() if k != "ranks"}
    state["rng"]["ranks"] = [own, own]  # as two ranks save their noise streams
    state["checksum"] = checksum(state)
    torch.save(state, old_run / "checkpoint.pt")
    before = snapshot(old_run)
    assert main(["train", "vae", "--out", str(old_run), "--epochs", "2", "--resume", *QUICK]) == 2
    err = one_line(capsys)
    assert "trained by 2 process(es) and this is 1" in err and "from 256 to 128 rows" in err
    assert "torchrun --nproc_per_node 2" in err
    assert snapshot(old_run) == before


def test_the_collective_timeout_is_read_from_the_environment(monkeypatch):
    from pyrovae.runs.processes import COLLECTIVE_TIMEOUT, collective_timeout

    monkeypatch.delenv("PYROVAE_COLLECTIVE_TIMEOUT", raising=False)
    assert collective_timeout() == COLLECTIVE_TIMEOUT <= 600
    monkeypatch.setenv("PYROVAE_COLLECTIVE_TIMEOUT", "2.5")
    assert collective_timeout() == 2.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv("PYROVAE_COLLECTIVE_TIMEOUT", bad)
        with pytest.raises(RunError, match="PYROVAE_COLLECTIVE_TIMEOUT must be a positive"):
            collective_timeout()


# A rank that stops itself (SIGSTOP) or dies (SIGKILL) at its third model call, in epoch 1.
STOPPING = """
import os
import signal

from pyrovae.guides import GaussianEncoder
from pyrovae.models import VAE

calls = {"n": 0}


class Stopping(VAE):
    def forward(self, x, y=None):
        calls["n"] += 1
        if calls["n"] == 3 and os.environ.get("RANK") == os.environ.get("STOP_RANK"):
            os.kill(os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))
        super().forward(x, y)


def make(input_dim, latent_dim, hidden_dims):
    kwargs = dict(input_dim=input_dim, latent_dim=latent_dim, hidden_dims=hidden_dims)
    return Stopping(likelihood="continuous-bernoulli", **kwargs), GaussianEncoder(**kwargs)
"""


def torchrun(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m pyrovae ARGS`` with ``stopping_pair`` importable."""
    import socket

    (tmp_path / "stopping_pair.py").write_text(STOPPING)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "pyrovae",
               *args]  # fmt: skip
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{root}:{tmp_path}", **env}
    job = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = job.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # SIGTERM to torchrun, which stops its ranks (SIGKILL after its grace period): they
        # run in sessions of their own, out of reach of a kill of this child alone.
        job.terminate()
        job.communicate(timeout=120)
        raise
    return subprocess.CompletedProcess(command, job.returncode, out, err)


@pytest.mark.slow
def test_a_frozen_rank_fails_the_others_after_the_collective_timeout(tmp_path):
    """A rank stopped by SIGSTOP blocked rank 0 and torchrun for gloo's 30 minutes; with
    PYROVAE_COLLECTIVE_TIMEOUT=3 rank 0 fails in one line naming the timeout and rank 1,
    and its run, stopped in epoch 1, leaves nothing (torchrun then kills rank 1)."""
    out = tmp_path / "run"
    started = time.perf_counter()
    args = ["train", "stopping_pair:make", "--out", str(out), "--epochs", "1", *QUICK]
    result = torchrun(
        tmp_path, *args, STOP_RANK="1", STOP_SIGNAL="SIGSTOP", PYROVAE_COLLECTIVE_TIMEOUT="3"
    )
    assert result.returncode != 0
    assert time.perf_counter() - started < 150  # torchrun's own 30 s grace included
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if "pyrovae: error:" in line]
    assert errors, result.stderr
    said = lines[errors[0]]
    assert "rank 0: rank 1 did not join a collective within the 3 s timeout" in said
    assert "PYROVAE_COLLECTIVE_TIMEOUT" in said
    assert not [line for line in lines[: errors[0]] if "Traceback" in line]  # rank 0's own
    assert not out.exists()


@pytest.mark.slow
def test_a_rank_killed_in_the_first_epoch_leaves_nothing_and_ranks_must_match(tmp_path):
    """A rank killed under torchrun (torchrun then sends SIGTERM to rank 0) left a directory
    holding only .lock; a one-process checkpoint resumed by two ranks was accepted silently."""
    out = tmp_path / "run"
    args = ["train", "stopping_pair:make", "--out", str(out), "--epochs", "1", *QUICK]
    result = torchrun(tmp_path, *args, STOP_RANK="1", STOP_SIGNAL="SIGKILL")
    assert result.returncode != 0
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert main(["train", "vae", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    resume = ["train", "vae", "--out", str(out), "--epochs", "2", "--resume", *QUICK]
    result = torchrun(tmp_path, *resume)
    assert result.returncode != 0
    assert "trained by 1 process(es) and this is 2" in result.stderr
    assert "resume it with a single process" in result.stderr
