"""Runs at their edges (issue 17), end to end through ``pyrovae.cli.main`` as a user runs them:
labels that are not class indices, tiny test sets, settings that are not finite, outputs that
cannot be written, grids too large to draw, file modes, progress bars in a log file and the
saved outputs of the notebooks."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae.atomic import atomic_write
from pyrovae.cli import main
from pyrovae.data import DataError, DataSplits
from pyrovae.runs.config import TrainConfig
from pyrovae.runs.record import RunError, checksum
from pyrovae.runs.registry import config_for

TINY = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet"]
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "examples" / "notebooks").glob("*.ipynb"))
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def train(out: Path, *extra: str, model: str = "vae") -> int:
    return main(["train", model, "--out", str(out), *TINY, *extra])


def one_line_error(capsys) -> str:
    """The standard error of a command that failed with one line (no traceback)."""
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-epoch VAE on digits, written under umask 022."""
    out = tmp_path_factory.mktemp("edges") / "run"
    old = os.umask(0o022)
    try:
        assert train(out, "--no-figures") == 0
    finally:
        os.umask(old)
    return out


def digits_npz(path: Path, relabel) -> Path:
    """digits as an .npz of x and y, with ``relabel(x, y) -> (x, y)`` applied."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = relabel((bunch.data / 16).astype(np.float32), bunch.target.astype(np.int64))
    np.savez(path, x=x, y=y)
    return path


# ---- 1. labels are class indices 0..C-1 ------------------------------------------------------


def test_ssvae_refuses_labels_outside_0_to_c_minus_1(tmp_path, capsys):
    """Two labels set to 200 and 255 made a 256-class SSVAE."""

    def relabel(x, y):
        y = y.copy()
        y[3], y[7] = 200, 255
        return x, y

    data = digits_npz(tmp_path / "d.npz", relabel)
    out = tmp_path / "run"
    assert train(out, "--dataset", str(data), "--no-figures", model="ssvae") == 2
    err = one_line_error(capsys)
    assert "200, 255" in err and "outside 0..11" in err and "relabel" in err
    assert not out.exists()


def test_ssvae_refuses_classes_without_an_example(tmp_path, capsys):
    """Labels {0, 5, 9} silently became 10 classes."""

    def keep_three(x, y):
        keep = np.isin(y, (0, 5, 9))
        return x[keep], y[keep]

    data = digits_npz(tmp_path / "d.npz", keep_three)
    out = tmp_path / "run"
    assert train(out, "--dataset", str(data), "--no-figures", model="ssvae") == 2
    err = one_line_error(capsys)
    assert "5, 9" in err and "outside 0..2" in err and "1, 2 have no example" in err
    assert "relabel" in err


def splits(*labels) -> DataSplits:
    ys = [torch.as_tensor(y, dtype=torch.int64) for y in labels]
    x = [torch.zeros(len(y), 2) for y in ys]
    return DataSplits("toy", x[0], x[1], ys[0], ys[1], None)


def test_class_count():
    from pyrovae.data import class_count

    assert class_count(splits([0, 1, 2, 2], [1, 0])) == 3
    assert class_count(splits([0, 0], [1, 1])) == 2  # a class in the test split only is one
    toy = DataSplits("toy", torch.zeros(2, 1), torch.zeros(1, 1), None, None, None)
    assert class_count(toy) is None
    with pytest.raises(DataError, match=r"labels, 3 lies outside 0\.\.2 \(and 2 has no example\)"):
        class_count(splits([0, 1, 3], [0]))
    many = splits(list(range(0, 60, 2)), [0])  # 30 labels, 15 of them outside 0..29
    with pytest.raises(DataError, match=r"30, 32, 34, 36, 38, 40, 42, 44, 46, 48, \.\.\. \(15 in"):
        class_count(many)


# ---- 2. smaller items ----------------------------------------------------------------------


def test_tiny_test_sets_get_their_figures(tmp_path, recwarn):
    """Fewer than 12 test rows crashed the interpolation figure, in train and in plot."""
    rows = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    np.save(tmp_path / "tiny.npy", rows)
    out = tmp_path / "run"
    assert train(out, "--dataset", str(tmp_path / "tiny.npy"), "--test-fraction", "0.2") == 0
    assert (out / "figures" / "interpolation.png").is_file()  # 8 test rows: 4 pairs
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "interpolation.png").is_file()
    # One test row: no pair to interpolate, no variance to rank latents by, no PCA.
    np.save(tmp_path / "three.npy", rows[:3])
    one = tmp_path / "one"
    args = ["--dataset", str(tmp_path / "three.npy"), "--latent-dim", "5"]
    assert train(one, *args) == 0
    assert (one / "figures" / "latent_space.png").is_file()
    assert not (one / "figures" / "interpolation.png").exists()
    assert not [w for w in recwarn if "degrees of freedom" in str(w.message)]


def test_a_checkpoint_whose_keys_do_not_fit_the_model_is_refused_in_one_line(
    run_dir, tmp_path, capsys
):
    """A decoder weight renamed, missing, or an unknown tensor beside them: reopening the
    run must not evaluate or draw a randomly initialised decoder and exit 0."""
    for damage in ("renamed", "missing", "extra"):
        out = tmp_path / damage
        shutil.copytree(run_dir, out)
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        weights = state["model"]
        key = next(k for k in weights if k.startswith("decoder") and k.endswith("weight"))
        value = weights.pop(key) if damage != "extra" else weights[key]
        if damage != "missing":
            weights[key.replace("decoder", "renamed_decoder")] = value
        state["checksum"] = checksum(state)  # not damage: another model's matching tensors
        torch.save(state, out / "checkpoint.pt")
        for args in (["evaluate", str(out), "--num-samples", "2", "--quiet"], ["plot", str(out)]):
            assert main(args) == 2, (damage, args)
            err = one_line_error(capsys)
            assert "does not fit the model that config.json describes" in err, err
            assert "(Error(s) in loading state_dict for VAE:)" in err  # torch's reason, named
            assert "mixed or damaged" in err
        assert not (out / "eval.json").exists() and not (out / "figures").exists()


def test_evaluate_refuses_batch_size_zero(run_dir, capsys):
    args = ["evaluate", str(run_dir), "--num-samples", "5", "--quiet", "--batch-size", "0"]
    assert main(args) == 2
    assert "--batch-size must be at least 1, got 0" in one_line_error(capsys)


def test_evaluate_api_refuses_batch_size_zero(run_dir):
    from pyrovae.runs import evaluate, load_run

    with pytest.raises(ValueError, match="--batch-size must be at least 1, got 0"):
        evaluate(load_run(run_dir), num_samples=5, batch_size=0, progress=False)


NON_FINITE = [
    ("vae", "--lr", "inf"),
    ("vae", "--lr", "nan"),
    ("vae", "--beta", "inf"),
    ("vae", "--beta", "nan"),
    ("ssvae", "--alpha", "nan"),
    ("ssvae", "--alpha", "inf"),
    ("gmm", "--tol", "inf"),
    ("gmm", "--reg-covar", "nan"),
    ("ae", "--test-fraction", "nan"),
]


@pytest.mark.parametrize("model, flag, value", NON_FINITE)
def test_non_finite_settings_are_refused(tmp_path, capsys, model, flag, value):
    out = tmp_path / "run"
    assert main(["train", model, "--out", str(out), "--quiet", flag, value]) == 2
    assert f"{flag} must be a finite number, got {value}" in one_line_error(capsys)
    assert not out.exists()


def test_non_finite_options_are_refused_by_validate():
    from pyrovae.runs.recipes.factory import FactoryOptions
    from pyrovae.runs.recipes.mixture import MixtureOptions
    from pyrovae.runs.recipes.vae import VAEOptions

    for options in (FactoryOptions(beta=math.inf), VAEOptions(beta=-math.inf)):
        with pytest.raises(ValueError, match="--beta must be a finite number"):
            options.validate()
    with pytest.raises(ValueError, match="--tol must be a finite number, got inf"):
        MixtureOptions(tol=math.inf).validate()
    with pytest.raises(ValueError, match="--lr must be a finite number, got inf"):
        config_for("vae", lr=math.inf).validate()
    with pytest.raises(ValueError, match="--test-fraction must be a finite number, got nan"):
        TrainConfig(test_fraction=math.nan).validate()
    config_for("vae", lr=0.5, beta=4.0).validate()  # finite values pass


def test_train_out_at_a_file_or_where_nothing_can_be_made_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a run\n")
    assert train(afile) == 2
    assert "is a file" in one_line_error(capsys)
    assert train(afile / "run") == 2
    assert "cannot create the run directory" in one_line_error(capsys)
    assert afile.read_text() == "not a run\n"


@pytest.mark.skipif(AS_ROOT, reason="permissions do not stop root")
def test_train_out_in_a_read_only_directory_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert train(locked / "run") == 2
        assert "cannot create the run directory" in one_line_error(capsys)
    finally:
        locked.chmod(0o755)


def test_sample_and_plot_out_that_cannot_be_written_is_one_line(run_dir, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a picture\n")
    cases = [
        (["sample", str(run_dir), "--n", "4", "--out", str(tmp_path)], "is a directory"),
        (["sample", str(run_dir), "--n", "4", "--out", str(afile / "s.png")], "is a file"),
        (["plot", str(run_dir), "--out", str(afile)], "is a file"),
        (["plot", str(run_dir), "--out", str(afile / "figures")], "is a file"),
    ]
    for args, problem in cases:
        assert main(args) == 2, args
        err = one_line_error(capsys)
        assert problem in err and "--out" in err, err
    assert afile.read_text() == "not a picture\n"


def test_out_checks(tmp_path):
    from pyrovae.runs.paths import check_out_dir, check_out_file

    check_out_dir(tmp_path / "new" / "deeper")  # to be made: fine, and nothing is made
    check_out_file(tmp_path / "new" / "grid.png")
    assert not (tmp_path / "new").exists() and not list(tmp_path.iterdir())
    (tmp_path / "f").write_text("")
    with pytest.raises(RunError, match="is a file, not a directory"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(RunError, match="is a directory, not a file"):
        check_out_file(tmp_path)
    with pytest.raises(RunError, match="is a file, not a directory"):
        check_out_file(tmp_path / "f" / "grid.png")


def refuse_writes_into(directory: Path, monkeypatch) -> None:
    """Renames into ``directory`` (or below it) fail as in a read-only directory (which root,
    as tests may run, would write into anyway)."""
    real = os.replace
    root = directory.resolve()

    def replace(src, dst, *args, **kwargs):
        if Path(dst).resolve().is_relative_to(root):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_evaluate_prints_the_numbers_before_failing_to_save_them(
    run_dir, tmp_path, capsys, monkeypatch
):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    refuse_writes_into(copy, monkeypatch)
    assert main(["evaluate", str(copy), "--num-samples", "5", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert "test log p(x), IS K=5" in out  # the table came first
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1
    assert "printed above" in err and str(copy / "eval.json") in err and "Permission denied" in err
    assert not (copy / "eval.json").exists() and not list(copy.rglob("*.tmp"))


@pytest.mark.skipif(AS_ROOT, reason="permissions do not stop root")
def test_evaluate_on_a_read_only_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    copy.chmod(0o555)
    try:
        assert main(["evaluate", str(copy), "--num-samples", "5", "--quiet"]) == 2
        out, err = capsys.readouterr()
        assert "test log p(x), IS K=5" in out and "printed above" in err
    finally:
        copy.chmod(0o755)


def test_eval_json_records_the_epoch_it_evaluated(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert main(["evaluate", str(copy), "--num-samples", "5", "--quiet"]) == 0
    report = json.loads((copy / "eval.json").read_text())
    assert report["epoch"] == 1


def test_eval_json_of_an_ssvae_records_the_selected_epoch(tmp_path):
    out = tmp_path / "ssvae"
    extra = ["--epochs", "2", "--num-labels", "50", "--no-figures"]
    assert train(out, *extra, model="ssvae") == 0
    assert main(["evaluate", str(out), "--num-samples", "5", "--quiet"]) == 0
    report = json.loads((out / "eval.json").read_text())
    best = torch.load(out / "best.pt", weights_only=True)
    assert report["epoch"] == report["selected_epoch"] == best["epoch"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "f.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_run_files_get_the_mode_the_umask_gives(run_dir, tmp_path):
    """Not 0600, which tempfile.mkstemp gives: a run is shared as any file is."""
    for name in ("config.json", "checkpoint.pt", "metrics.json"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name
    old = os.umask(0o022)
    try:
        assert main(["sample", str(run_dir), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s.png").stat().st_mode) == 0o644


def test_sample_refuses_more_images_than_fit_in_memory(run_dir, tmp_path, capsys):
    """--n 100000 was killed for memory (about 0.36 MB per image drawn)."""
    from pyrovae.runs.limits import max_samples

    out = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "--n", "100000", "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert "--n 100000" in err and f"at most {max_samples((1, 8, 8))}" in err
    assert not out.exists()


def test_sample_count_limit():
    from pyrovae.runs.limits import check_sample_count, max_samples

    assert 1000 < max_samples((1, 28, 28)) < max_samples((1, 8, 8)) < 10_000
    assert max_samples((3, 256, 256)) < max_samples((1, 28, 28))
    check_sample_count(max_samples((1, 28, 28)), (1, 28, 28))
    with pytest.raises(RunError, match="--n"):
        check_sample_count(max_samples((1, 28, 28)) + 1, (1, 28, 28))


# ---- 3. output a user reads ----------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_redraw_every_few_seconds_off_a_terminal():
    from pyrovae.infer.progress import NON_TERMINAL_INTERVAL, progress_bar

    with progress_bar(total=3, file=io.StringIO(), mininterval=0.5) as bar:
        assert bar.mininterval == NON_TERMINAL_INTERVAL >= 5
    with progress_bar(total=3, file=Terminal(), mininterval=0.5) as bar:
        assert bar.mininterval == 0.5
    with progress_bar(total=3, file=io.StringIO(), disable=True) as bar:
        bar.update(3)


def test_training_into_a_log_file_writes_a_line_every_few_seconds(capsys):
    """In a log file or CI (standard error not a terminal) every postfix refresh was a line:
    one every ten steps."""
    import pyrovae
    from pyrovae.guides import GaussianEncoder
    from pyrovae.models import VAE

    x = torch.rand(2000, 4)
    model = VAE(4, 2, hidden_dims=(8,), likelihood="continuous-bernoulli")
    guide = GaussianEncoder(4, 2, hidden_dims=(8,))
    start = time.perf_counter()
    history = pyrovae.fit(model, guide, x, epochs=2, batch_size=10, progress=True, seed=0)
    elapsed = time.perf_counter() - start
    assert len(history) == 2
    err = capsys.readouterr().err
    draws = err.count("\r")
    assert draws <= 3 + elapsed / 5, (draws, elapsed)  # opened, closed, one per 5 seconds
    assert "epoch 2/2" in err.splitlines()[-1]  # the last line has the final postfix


def test_progress_bars_need_no_ipywidgets(monkeypatch):
    """Without ipywidgets, tqdm.auto warns "IProgress not found" (with a local path) in a
    Jupyter kernel: the plain bar is taken instead."""
    import importlib.util

    from tqdm import std

    from pyrovae.infer import progress

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real(name)
    )
    assert progress.bar_class() is std.tqdm


#: A local path or tqdm's widget warning in a saved output.
LOCAL = re.compile(r"/(?:work|tmp|home|root|Users|private|var/folders)/|IProgress|TqdmWarning")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_notebook_outputs_carry_no_local_path_or_widget_warning(notebook):
    nb = json.loads(notebook.read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            texts = [output.get("text", ""), output.get("evalue", ""), output.get("traceback", [])]
            texts += [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                text = "".join(text) if isinstance(text, list) else text
                found += [f"cell {i}: {m.group(0)!r}" for m in LOCAL.finditer(text)]
    assert not found, found


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_client's own, at start-up
def test_importing_pyrovae_in_a_notebook_prints_no_widget_warning(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import pyrovae")])
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [json.dumps(o) for o in nb.cells[0].outputs]
    assert not [o for o in outputs if "IProgress" in o or "Warning" in o], outputs


# ---- 4. resuming keeps the run's own settings (issue 36) -----------------------------------


def test_resume_without_epochs_keeps_the_runs_own_epochs(tmp_path):
    """--resume without --epochs reset a run's epochs to the parser default (100) and
    rewrote config.json with it; --epochs on a resume changes that setting only."""
    out = tmp_path / "run"
    assert train(out, "--no-figures") == 0
    config = json.loads((out / "config.json").read_text())
    # A 2-epoch run stopped after its first epoch (epochs is a per-call setting: the
    # checkpoint's copy of the config need not agree).
    (out / "config.json").write_text(json.dumps({**config, "epochs": 2}))
    assert main(["train", "vae", "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text()) == {**config, "epochs": 2}
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert main(["train", "vae", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text()) == {**config, "epochs": 3}
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_resume_refuses_a_changed_setting_and_accepts_the_first_command_repeated(
    tmp_path, capsys, monkeypatch
):
    """--resume continues with the run's own settings: a changed --lr or recipe option was
    dropped without a word (the run went on at its own rate); now it is refused, naming
    both values, and the checkpoint is untouched. The first command repeated with --resume
    (a relative --data-dir included: the run saves it absolute) continues."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    out = tmp_path / "run"
    first = ["--dataset", "digits", "--data-dir", "data", "--lr", "1e-3", "--no-figures"]
    assert train(out, *first) == 0
    before = (out / "checkpoint.pt").read_bytes()
    resume = ["train", "vae", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]
    assert main([*resume, "--lr", "1e-4"]) == 2
    err = one_line_error(capsys)
    assert "--lr 0.0001 (the run's: 0.001)" in err and "drop it to continue" in err
    assert main([*resume, "--hidden", "16,8", "--seed", "3"]) == 2
    err = one_line_error(capsys)
    assert "--seed 3 (the run's: 0); --hidden 16,8 (the run's: 16); drop them" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert main([*resume, *TINY[2:], *first]) == 0  # --epochs 2 and the first settings
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_resume_under_another_built_in_model_is_refused(tmp_path, capsys):
    """``pyrovae train hvae --out VAE_RUN --resume`` continued the VAE as if it were named."""
    out = tmp_path / "run"
    assert train(out, "--dataset", "digits", "--no-figures") == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", "hvae", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    assert f"{out} holds a vae run, not hvae; resume it with pyrovae train vae --out" in (
        one_line_error(capsys)
    )
    assert (out / "checkpoint.pt").read_bytes() == before
