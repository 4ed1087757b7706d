"""The CLI shows an error a user can fix as one line, and keeps the traceback of the rest."""

from __future__ import annotations

import re
import textwrap

import pytest
import torch

from pyrovae.cli import main
from pyrovae.runs import lock
from pyrovae.runs.errors import is_user_error
from pyrovae.runs.lock import RunLock
from pyrovae.runs.record import RunError
from pyrovae.runs.reopen import check_device, check_factory

BROKEN = """
import pyro
import pyro.distributions as dist
import torch


def make():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        raise ValueError("a bug in the user's guide")

    return model, guide, torch.randn(40, 1)
"""


def raised(function):
    try:
        function()
    except Exception as e:  # noqa: BLE001 - the exception itself is what is tested
        return e
    raise AssertionError("nothing raised")


def test_a_value_error_pyrovae_raises_on_purpose_is_a_user_error():
    from pyrovae.runs import config_for

    error = raised(lambda: config_for("vae", beta=0.0).validate())
    assert isinstance(error, ValueError) and is_user_error(error)


def test_a_value_error_from_elsewhere_is_not(monkeypatch):
    assert not is_user_error(raised(lambda: int("x")))  # not pyrovae's own raise
    assert not is_user_error(raised(lambda: [].index(1)))
    assert not is_user_error(raised(lambda: {}["key"]))
    from pyrovae.runs import RunError, load_run

    error = raised(lambda: load_run("/no/such/run"))
    assert isinstance(error, RunError) and is_user_error(error)
    monkeypatch.setenv("PYROVAE_TRACEBACK", "1")
    assert not is_user_error(error)


def test_the_cli_prints_one_line_for_bad_settings(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--beta", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "pyrovae: error: --beta must be positive, got 0.0\n"
    assert not (tmp_path / "r").exists()


def test_a_bug_in_a_users_program_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "broken_pair.py").write_text(textwrap.dedent(BROKEN))
    monkeypatch.chdir(tmp_path)
    args = ["train", "broken_pair:make", "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet"]
    with pytest.raises(ValueError, match="a bug in the user's guide"):
        main(args)


# ---- a run reopened on another machine (mutation survivors of runs/reopen.py) -------------


def test_a_device_this_machine_lacks_is_refused_as_unavailable_not_unknown():
    """--device mps or xpu where there is none: the refusal says the device is not available
    on this machine and to use cpu; calling it no device at all would refuse it on the
    machines that have one."""
    absent = [kind for kind in ("mps", "xpu") if not getattr(torch, kind).is_available()]
    if not absent:
        pytest.skip("this machine has both mps and xpu")
    for kind in absent:
        message = f"--device {kind}: {kind} is not available on this machine; use cpu"
        with pytest.raises(RunError, match=re.escape(message)):
            check_device(kind)


def test_a_factory_module_already_imported_from_elsewhere_is_refused(tmp_path):
    """A run whose factory is ``json:loads`` reopened with --factory-path DIR, DIR holding a
    json.py: Python would run the json already imported (the standard library's), not the
    code in DIR the user vouched for, so the run is refused, naming DIR and the fix."""
    (tmp_path / "json.py").write_text("def loads(**kwargs):\n    pass\n")
    message = (
        f"whose module json is not in --factory-path {tmp_path.resolve()}; pass the directory "
        "that holds it"
    )
    with pytest.raises(RunError, match=re.escape(message)):
        check_factory(tmp_path / "run", "json:loads", None, (str(tmp_path),))


# ---- the run directory's lock (mutation survivors of runs/lock.py) ------------------------


def test_a_symbolic_link_in_place_of_the_lock_file_is_refused_with_the_fix(tmp_path):
    """A run someone sent with RUN/.lock linked elsewhere: refused as a symbolic link (never
    written through), saying how to clear it."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere").write_text("keep\n")
    (run / ".lock").symlink_to(tmp_path / "elsewhere")
    message = (
        f"{run / '.lock'} is a symbolic link, not pyrovae's lock file; remove it "
        f"(rm {run / '.lock'}) if no pyrovae process is training into the run, and retry"
    )
    with pytest.raises(RunError, match=re.escape(message)), RunLock(run):
        pass
    assert (tmp_path / "elsewhere").read_text() == "keep\n"


def test_a_run_directory_replaced_while_it_is_locked_is_locked_anew(tmp_path, monkeypatch):
    """The path names another directory than the one just locked (replaced by --overwrite
    meanwhile): the lock is taken again on the one there now, not refused."""
    run = tmp_path / "run"
    run.mkdir()
    answers = iter([False, True])  # replaced once, then the same
    monkeypatch.setattr(lock.os.path, "samestat", lambda a, b: next(answers))
    with RunLock(run) as held:
        assert held.directory == run and (run / ".lock").read_text().strip().isdigit()


def test_an_exchange_that_fails_names_the_run(tmp_path):
    """Swapping a staged run with a run that is not there fails naming the run's path."""
    staged = tmp_path / ".run.new-1"
    staged.mkdir()
    with pytest.raises(OSError) as failed:
        lock.exchange(staged, tmp_path / "run")
    assert failed.value.filename == str(tmp_path / "run")


def test_without_an_atomic_exchange_a_failed_swap_puts_the_old_run_back(tmp_path, monkeypatch):
    """Where the system has no renameat2 the swap is two renames; when the second fails (the
    staged run gone), the old run is renamed back to its place, whole."""
    monkeypatch.setattr(lock.ctypes, "CDLL", lambda *args, **kwargs: object())
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_text("old\n")
    with pytest.raises(FileNotFoundError):
        lock.exchange(tmp_path / ".run.new-1", run)  # nothing staged there
    assert (run / "checkpoint.pt").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _removals_fail(monkeypatch) -> None:
    """Every directory removal fails as it does on a read-only or foreign-owned folder (root
    ignores permissions, so the tests make the failure by hand)."""
    import errno

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(lock.os, "rmdir", refuse)


def test_a_dead_leftover_that_cannot_be_removed_does_not_stop_the_run(tmp_path, monkeypatch):
    """A killed replacement's staging directory beside the run is removed when the run is
    next locked; where the removal fails, the lock is still taken (the leftover stays for a
    later try), not refused for a cleanup the user did not ask for."""
    run, left = tmp_path / "run", tmp_path / ".run.new-dead"
    run.mkdir()
    left.mkdir()
    (left / "checkpoint.pt").write_text("half\n")
    with monkeypatch.context() as patched:
        _removals_fail(patched)
        with RunLock(run) as held:
            assert held.directory == run and left.is_dir()
    with RunLock(run):  # removals work again: the leftover goes
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failed_replacement_reports_its_own_error_when_its_staging_cannot_be_removed(
    tmp_path, monkeypatch
):
    """A replacement (``--overwrite``) that fails after staging: the user sees its error, not
    one from removing the staging directory, and the old run is untouched."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_text("old\n")
    _removals_fail(monkeypatch)
    with pytest.raises(ValueError, match="the replacement's own failure"), RunLock(run) as held:
        held.stage()
        raise ValueError("the replacement's own failure")
    assert (run / "checkpoint.pt").read_text() == "old\n"


def test_a_swap_whose_old_run_cannot_be_removed_still_completes(tmp_path, monkeypatch):
    """After the exchange the new run is in place; an old run that cannot be removed stays
    under its staging name (removed when the run is next locked) and the swap succeeds."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_text("old\n")
    with RunLock(run) as held:
        staging = held.stage()
        (staging / "checkpoint.pt").write_text("new\n")
        with monkeypatch.context() as patched:
            _removals_fail(patched)
            held.swap()
    assert (run / "checkpoint.pt").read_text() == "new\n"
    with RunLock(run):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
